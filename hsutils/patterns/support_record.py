"""Notebook 09 保険者支援の記録: the 国保連合会's 支援カルテ per insurer, the support-process checklist
and 日本健康会議 宣言2 tracking (docs/support_record.md; seeds 001 and 003).

Records are plain files the staff own, one per insurer, in a support folder: YAML (`*.yaml`) or the
Excel form (`*.xlsx`, sheets as in `data_templates/support_record_template.xlsx`). Both are turned into
the same dictionary and validated by one function (`validate_record`); every mistake is a Japanese
`SupportRecordError` naming the file, the entry, the field, the value and what was expected
(docs/support_record.md §1).

This module is the one implementation of reading and judging the five requirements of 宣言2
(docs/rules.md §5.5): notebook 04's self-check (`hsutils.patterns.nephropathy.load_checklist`,
`checklist_table`, `checklist_verdict`) calls `load_declaration2_selfcheck`, `declaration2_table` and
`declaration2_verdict` here, and the records of notebook 09 hold the same answers per fiscal year.

Privacy (docs/support_record.md §5): records name insurer and 連合会 staff. Committee tables and the HTML
report show a person's role, never the name, unless the person's entry says `publishable: true`
(`person_label`, `mask_names`). The records themselves are read from the local folder only.

Records are small (tens of insurers, tens of visits each): plain Python over the entries is fine here.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from hsutils.core import files, settings, vocab
from hsutils.core.errors import ParameterError

#: What notebook 09 reads of the cache's person-level tables (`notebook.start(with_tables=TABLES)`): nothing
#: but the fiscal year of person_year (the priority scores come from the strata table, `overview`), so the
#: prefecture's run does not hold every person's row (issue 17).
TABLES = {"person_year": ("fy",)}

# ---------------------------------------------------------------------------------------------
# vocabulary of the records (docs/support_record.md §1)

INSURER_TYPES = ("市町村", "広域連合", "国保組合")
CONTACT_TYPES = ("訪問", "支援・評価委員会", "研修会", "来所", "電話・メール", "その他")
#: Contacts of the 保健事業支援・評価委員会 (the 累積支援率 of seed 001 counts these).
COMMITTEE_TYPES = ("支援・評価委員会",)
ACTION_STATES = ("未着手", "対応中", "完了")
CHECK_STATES = ("未着手", "実施中", "済", "対象外")
ACTION_OWNERS = ("保険者", "連合会", "県", "支援・評価委員会", "その他")
#: Days without any contact after which an insurer is listed as 支援間隔超過 (parameter of notebook 09).
DEFAULT_CONTACT_INTERVAL_DAYS = 365
DATE_EXPECTED = "YYYY-MM-DD の形式の日付（例: 2024-05-10）"
RECORD_SUFFIXES = (".yaml", ".yml", ".xlsx")
TEMPLATE_NAME = "support_record_template"
DEMO_FOLDER_NAME = "support_records_demo"
#: The 連合会-wide record of a support folder (checklist items of scope 連合会; docs/support_record.md §1.3).
RENGOKAI_FILE = "rengokai.yaml"


class SupportRecordError(ParameterError):
    """A support record cannot be used; the message names file, entry, field, value and expectation."""


def _err(file, entry: str, field_name: str, value, expected: str) -> SupportRecordError:
    """The one message format of this module (docs/support_record.md §1)."""
    shown = "（空欄）" if value is None or (isinstance(value, str) and not value.strip()) else str(value)
    return SupportRecordError(
        f"支援記録 {Path(file).name}: {entry} の項目「{field_name}」の値「{shown}」は使えません。{expected}。")


# ---------------------------------------------------------------------------------------------
# checklist and hearing items (package data, hsutils/data/PROVENANCE.md §7)


@dataclass(frozen=True)
class ChecklistItem:
    id: str
    part: str
    numbers: str
    title: str
    text: str
    scope: str
    applies_to: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.part}{self.numbers} {self.title}"


def _checklist_path() -> Path:
    return Path(str(resources.files("hsutils") / "data" / "support_checklist.yaml"))


@lru_cache(maxsize=1)
def _package_data() -> dict:
    return yaml.safe_load(_checklist_path().read_text(encoding="utf-8"))


def checklist_items() -> list[ChecklistItem]:
    """All items of the support-process checklist (seed 001), in the guide's order."""
    return [ChecklistItem(d["id"], d["part"], d["numbers"], d["title"], d["text"], d["scope"],
                          tuple(d.get("applies_to") or ())) for d in _package_data()["checklist"]]


def rengokai_items() -> list[ChecklistItem]:
    """The items recorded once for the whole 連合会 (scope 連合会: 事務局の体制, ツールの収集, 研修会の企画)."""
    return [i for i in checklist_items() if i.scope == "連合会"]


def insurer_items(insurer_type: str) -> list[ChecklistItem]:
    """The items recorded per insurer of this type (scope 保険者, docs/support_record.md §2)."""
    return [i for i in checklist_items() if i.scope == "保険者" and insurer_type in i.applies_to]


def hearing_items(insurer_type: str) -> dict[str, str]:
    """ヒアリング項目 of the 訪問票 for one insurer type (市町村版 and 広域連合版 differ, seed 001)."""
    return dict(_package_data()["hearing"][insurer_type])


# ---------------------------------------------------------------------------------------------
# 日本健康会議 宣言2 (docs/rules.md §5.5, seed 003): the one reader and judge

DECLARATION2_REQUIREMENTS = {
    "extraction_criteria": ("①", "対象者の抽出基準が明確であること"),
    "family_doctor": ("②", "かかりつけ医と連携した取組であること"),
    "professionals": ("③", "保健指導を実施する場合には、専門職が取組に携わること"),
    "evaluation": ("④", "事業の評価を実施すること"),
    "prefecture_council": ("⑤", "取組の実施にあたり、地域の実情に応じて各都道府県の糖尿病対策推進会議等"
                                "との連携（各都道府県による対応策の議論や取組内容の共有）を図ること"),
}
DECLARATION2_ALWAYS_REQUIRED = ("extraction_criteria", "family_doctor", "professionals", "evaluation")
#: The notebook 04 example self-check in the parameters folder.
DECLARATION2_SELFCHECK_NAME = "nephropathy_checklist_demo.yaml"
ALL_REQUIREMENTS_LABEL = "全要件達成"


def declaration2_answer(value) -> bool | None:
    """はい/いいえ (yes/no, true/false, 済/未…) → True/False; empty → None (未記入)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bool):
        return value
    if str(value).strip() == "":
        return None
    answer = vocab.yes_no_value(value, extra=vocab.DONE_SPELLINGS)
    if answer is not None:
        return answer
    raise ParameterError(f"自己点検の回答「{value}」は はい／いいえ（yes/no）で記入してください")


def load_declaration2_selfcheck(path=None) -> dict:
    """Read one self-check YAML (parameters/nephropathy_checklist_demo.yaml is the example):
    `nephropathy_program` (bool, default true: ⑤ is then required) and
    `requirements: {<key>: {met: はい/いいえ, note: text}}` for the keys of `DECLARATION2_REQUIREMENTS`."""
    p = Path(path) if path else settings.parameter_file(DECLARATION2_SELFCHECK_NAME)
    if not p.exists():
        raise ParameterError(f"自己点検のファイル {p} が見つかりません（記入例: parameters/{DECLARATION2_SELFCHECK_NAME}）")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8-sig")) or {}
    except yaml.YAMLError as e:
        raise ParameterError(f"自己点検のファイル {p} の YAML の書き方に誤りがあります: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("requirements", {}), dict):
        raise ParameterError(f"自己点検のファイル {p} は「requirements: 要件ごとに met と note」の形式で書いてください")
    unknown = sorted(set(data.get("requirements", {})) - set(DECLARATION2_REQUIREMENTS))
    if unknown:
        raise ParameterError(f"自己点検のファイル {p} に不明な要件 {unknown} があります"
                             f"（使える名前: {', '.join(DECLARATION2_REQUIREMENTS)}）")
    return data


def declaration2_table(checklist: dict) -> pd.DataFrame:
    """The five requirements of 宣言2 as a checklist (docs/rules.md §5.5): 番号, 要件, 区分, 状況, 備考, 不足.
    ①–④ are always required; ⑤ is required for 糖尿病性腎症重症化予防 programs
    (`nephropathy_program`, default true). A requirement not answered counts as 未記入 (not met)."""
    nephro = bool(checklist.get("nephropathy_program", True))
    answers = checklist.get("requirements", {}) or {}
    rows = []
    for key, (mark, text) in DECLARATION2_REQUIREMENTS.items():  # five requirements
        entry = answers.get(key) or {}
        if not isinstance(entry, dict):
            entry = {"met": entry}
        met = declaration2_answer(entry.get("met"))
        required = key in DECLARATION2_ALWAYS_REQUIRED or nephro
        status = "未記入" if met is None else ("満たしている" if met else "満たしていない")
        rows.append({
            "番号": mark, "要件": text,
            "区分": "必須" if key in DECLARATION2_ALWAYS_REQUIRED else (
                "必須（糖尿病性腎症重症化予防）" if nephro else "任意"),
            "状況": status, "備考": str(entry.get("note") or ""),
            "不足": "不足" if (required and met is not True) else "",
            "key": key,
        })
    return pd.DataFrame(rows)


def declaration2_verdict(table: pd.DataFrame) -> str:
    """Japanese verdict of one self-check (docs/rules.md §5.5)."""
    missing = table[table["不足"] == "不足"]
    if missing.empty:
        return "判定: 宣言2の要件をすべて満たしています（①〜④必須、⑤糖尿病性腎症重症化予防の取組で必須）。"
    items = "、".join(missing["番号"] + "（" + missing["状況"] + "）")
    core_missing = missing["key"].isin(DECLARATION2_ALWAYS_REQUIRED).any()
    if core_missing:
        head = "判定: 宣言2の必須要件（①〜④）を満たしていません。"
    else:
        head = "判定: ①〜④は満たしていますが、糖尿病性腎症重症化予防の取組としては⑤が不足しています。"
    return f"{head}不足している要件: {items}。"


# ---------------------------------------------------------------------------------------------
# reading and validating one record (docs/support_record.md §1)


@dataclass
class Person:
    id: str
    name: str
    role: str
    since: dt.date | None = None
    until: dt.date | None = None
    key_person: bool = False
    publishable: bool = False

    @property
    def label(self) -> str:
        """What a committee output shows (docs/support_record.md §5)."""
        return person_label(self)


@dataclass
class Action:
    what: str
    due: dt.date
    owner: str
    status: str
    done: dt.date | None = None


@dataclass
class Contact:
    date: dt.date
    type: str
    rengokai: list[str]
    responders: list[str]
    topics: str = ""
    reaction: str = ""
    committee_advice: str = ""
    actions: list[Action] = field(default_factory=list)


@dataclass
class SupportRecord:
    """One insurer's 支援カルテ (validated)."""
    file: Path
    code: str
    name: str
    type: str
    structure: str
    staff: dict[str, Person]
    rengokai_staff: dict[str, Person]
    partners: list[str]
    hearing: dict[str, str]
    contacts: list[Contact]
    checklist: dict[str, dict]
    declaration2: dict[int, dict]

    @property
    def last_contact(self) -> dt.date | None:
        return max((c.date for c in self.contacts), default=None)


def person_label(person: Person) -> str:
    """Name (with role) when the person agreed to be published, otherwise the role only."""
    if person.publishable:
        return f"{person.name}（{person.role}）" if person.role else person.name
    return person.role or "担当者"


def mask_names(text: str, people) -> str:
    """`text` with the name of every person not marked publishable replaced by the role (free text
    such as 反応 or 協議内容 may mention a counterpart by name; docs/support_record.md §5)."""
    out = str(text or "")
    for p in sorted(people, key=lambda p: -len(p.name)):  # longest first: 山田花子 before 山田
        if p.name and not p.publishable:
            out = out.replace(p.name, f"［{p.role or '担当者'}］")
    return out


def parse_date(value, file, entry: str, field_name: str, required: bool = True) -> dt.date | None:
    """A date of a record: YAML date, Excel date or text YYYY-MM-DD / YYYY/MM/DD."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or (isinstance(value, str) and not value.strip()):
        if required:
            raise _err(file, entry, field_name, value, f"{DATE_EXPECTED}が必要です")
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, pd.Timestamp):
        return value.date()
    m = re.fullmatch(r"\s*(\d{4})[-/](\d{1,2})[-/](\d{1,2})\s*", str(value))
    if m:
        try:
            return dt.date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            pass
    raise _err(file, entry, field_name, value, f"{DATE_EXPECTED}が必要です")


def _text(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


def _required_text(d: dict, key: str, file, entry: str, expected: str) -> str:
    value = _text(d.get(key))
    if not value:
        raise _err(file, entry, key, d.get(key), expected)
    return value


def _choice(d: dict, key: str, choices, file, entry: str, default=None) -> str:
    value = _text(d.get(key)) or default
    if value not in choices:
        raise _err(file, entry, key, d.get(key), f"{' / '.join(choices)} のいずれかが必要です")
    return value


def _flag(d: dict, key: str, file, entry: str) -> bool:
    value = d.get(key)
    if value is None or _text(value) == "":
        return False
    if isinstance(value, bool):
        return value
    answer = vocab.yes_no_value(value)
    if answer is None:
        raise _err(file, entry, key, value, "はい／いいえ（true/false）が必要です")
    return answer


def _mapping(value, file, entry: str, field_name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _err(file, entry, field_name, value, "「名前: 値」の形の項目の並びが必要です")
    return value


def _list(value, file, entry: str, field_name: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _err(file, entry, field_name, value, "「- 」で始まる項目の並び（リスト）が必要です")
    return value


def _people(entries, file, section: str) -> dict[str, Person]:
    out: dict[str, Person] = {}
    for k, d in enumerate(_list(entries, file, section, section), 1):
        entry = f"{section} {k}件目"
        if not isinstance(d, dict):
            raise _err(file, entry, "id", d, "id・name・role などの項目が必要です")
        pid = _required_text(d, "id", file, entry, "担当者を区別する記号（例: A、R1）が必要です")
        if pid in out:
            raise _err(file, entry, "id", pid, f"{section}の中で重複しない記号が必要です（同じ記号が2回あります）")
        out[pid] = Person(
            id=pid, name=_text(d.get("name")),
            role=_required_text(d, "role", file, entry, "所属・職種（例: 国保年金課 保健師）が必要です"),
            since=parse_date(d.get("since"), file, entry, "since", required=False),
            until=parse_date(d.get("until"), file, entry, "until", required=False),
            key_person=_flag(d, "key_person", file, entry), publishable=_flag(d, "publishable", file, entry))
    return out


def _ids(value, known: dict, file, entry: str, field_name: str, section: str) -> list[str]:
    ids = [_text(v) for v in (value if isinstance(value, list) else re.split(r"[,、\s]+", _text(value)))]
    ids = [i for i in ids if i]
    for i in ids:
        if i not in known:
            raise _err(file, entry, field_name, i,
                       f"{section}の id（{', '.join(known) or 'まだ登録がありません'}）のいずれかが必要です")
    return ids


def _checklist(value, allowed, owner: str, file, where: dict) -> dict:
    """The `checklist` mapping of a record: item id → status/date/note, only the items `allowed`
    for this file (an insurer's items, or the 連合会-wide items of `rengokai.yaml`; §2)."""
    items = {i.id: i for i in allowed}
    every = {i.id: i for i in checklist_items()}
    checklist = {}
    for key, value in _mapping(value, file, "チェックリスト（checklist）", "checklist").items():
        c_entry = where.get(("checklist", key), f"チェックリスト（checklist）の {key}")
        if key not in items:
            known = every.get(key)
            hint = (f"「{key}」という項目はありません" if known is None
                    else f"「{key}」は連合会事務局全体の項目で、保険者ごとには記録しません（{RENGOKAI_FILE} に記録します）"
                    if known.scope == "連合会"
                    else f"「{key}」は保険者ごとの項目で、各保険者の支援カルテに記録します" if owner == "連合会"
                    else f"「{key}」は{owner}の項目ではありません")
            raise _err(file, c_entry, "checklist", key,
                       f"{hint}。{owner}の項目（{', '.join(items)}）のいずれかが必要です")
        d = value if isinstance(value, dict) else {"status": value}
        checklist[key] = {"status": _choice(d, "status", CHECK_STATES, file, c_entry),
                          "date": parse_date(d.get("date"), file, c_entry, "date", required=False),
                          "note": _text(d.get("note"))}
    return checklist


def validate_record(raw: dict, file, where: dict | None = None) -> SupportRecord:
    """A parsed record (from YAML or the Excel form) → SupportRecord, or SupportRecordError.

    `where` maps internal entry names to the places a user sees (Excel sheet and row); YAML
    entries are named by their position ("訪問記録 2件目（2024-05-10）")."""
    where = where or {}
    if not isinstance(raw, dict):
        raise _err(file, "ファイル全体", "insurer", raw, "insurer・visits などの項目をもつ形式が必要です")
    known = {"insurer", "staff", "rengokai_staff", "hearing", "visits", "checklist", "declaration2"}
    for key in raw:
        if key not in known:
            raise _err(file, "ファイル全体", key, key, f"使える項目は {', '.join(sorted(known))} です")
    ins = _mapping(raw.get("insurer"), file, "保険者の基本情報（insurer）", "insurer")
    entry = where.get("insurer", "保険者の基本情報（insurer）")
    code = _required_text(ins, "code", file, entry, "団体コード（市町村は5桁）または保険者番号が必要です")
    itype = _choice(ins, "type", INSURER_TYPES, file, entry)
    if itype == "市町村" and not re.fullmatch(r"\d{5}", code):
        raise _err(file, entry, "code", code, "市町村は5桁の団体コード（例: 17201）が必要です")
    name = _required_text(ins, "name", file, entry, "保険者名が必要です")
    staff = _people(raw.get("staff"), file, "保険者の担当者（staff）")
    rstaff = _people(raw.get("rengokai_staff"), file, "連合会の担当者（rengokai_staff）")

    allowed_hearing = hearing_items(itype)
    hearing = {}
    for key, value in _mapping(raw.get("hearing"), file, "ヒアリング項目（hearing）", "hearing").items():
        if key not in allowed_hearing:
            raise _err(file, where.get("hearing", "ヒアリング項目（hearing）"), str(key), key,
                       f"{itype}版のヒアリング項目（{', '.join(allowed_hearing)}）のいずれかが必要です")
        hearing[key] = _text(value)

    contacts: list[Contact] = []
    seen: dict[tuple, str] = {}
    for k, v in enumerate(_list(raw.get("visits"), file, "訪問記録（visits）", "visits"), 1):
        default_entry = f"訪問記録 {k}件目"
        entry = where.get(("visit", k), default_entry)
        if not isinstance(v, dict):
            raise _err(file, entry, "date", v, "date・type・topics などの項目が必要です")
        date = parse_date(v.get("date"), file, entry, "date")
        entry = where.get(("visit", k), f"{default_entry}（{date.isoformat()}）")
        ctype = _choice(v, "type", CONTACT_TYPES, file, entry)
        key = (date, ctype)
        if key in seen:
            raise _err(file, entry, "date", date.isoformat(),
                       f"同じ日付・種別（{ctype}）の記録が {seen[key]} にもあります。1回の支援は1件にまとめてください")
        seen[key] = entry
        actions = []
        for j, a in enumerate(_list(v.get("actions"), file, entry, "actions"), 1):
            a_entry = where.get(("action", k, j), f"{entry} の次の対応 {j}件目")
            if not isinstance(a, dict):
                raise _err(file, a_entry, "what", a, "what・due・owner・status の項目が必要です")
            status = _choice(a, "status", ACTION_STATES, file, a_entry, default="未着手")
            done = parse_date(a.get("done"), file, a_entry, "done", required=False)
            if status == "完了" and done is None:
                raise _err(file, a_entry, "done", a.get("done"), f"status が完了のときは完了日（{DATE_EXPECTED}）が必要です")
            actions.append(Action(
                what=_required_text(a, "what", file, a_entry, "合意した次の対応の内容が必要です"),
                due=parse_date(a.get("due"), file, a_entry, "due"),
                owner=_choice(a, "owner", ACTION_OWNERS, file, a_entry, default="保険者"),
                status=status, done=done))
        contacts.append(Contact(
            date=date, type=ctype,
            rengokai=_ids(v.get("rengokai"), rstaff, file, entry, "rengokai", "連合会の担当者（rengokai_staff）"),
            responders=_ids(v.get("responders"), staff, file, entry, "responders", "保険者の担当者（staff）"),
            topics=_text(v.get("topics")), reaction=_text(v.get("reaction")),
            committee_advice=_text(v.get("committee_advice")), actions=actions))
    contacts.sort(key=lambda c: c.date)

    checklist = _checklist(raw.get("checklist"), insurer_items(itype), f"{itype}", file, where)

    declaration2 = {}
    for year, value in _mapping(raw.get("declaration2"), file, "宣言2（declaration2）", "declaration2").items():
        y_entry = where.get(("declaration2", year), f"宣言2（declaration2）の {year}年度")
        try:
            fy = int(str(year).strip())
        except ValueError:
            fy = None
        if fy is None or not 2015 <= fy <= 2100:
            raise _err(file, y_entry, "年度", year, "西暦の年度（例: 2024）が必要です")
        d = _mapping(value, file, y_entry, str(year))
        reqs = _mapping(d.get("requirements"), file, y_entry, "requirements")
        for key, ans in reqs.items():
            if key not in DECLARATION2_REQUIREMENTS:
                raise _err(file, y_entry, "requirements", key,
                           f"宣言2の要件の名前（{', '.join(DECLARATION2_REQUIREMENTS)}）のいずれかが必要です")
            met = ans.get("met") if isinstance(ans, dict) else ans
            try:
                declaration2_answer(met)
            except ParameterError:
                raise _err(file, f"{y_entry} の {key}", "met", met, "はい／いいえ（yes/no）が必要です") from None
        declaration2[fy] = {"nephropathy_program": _flag(d, "nephropathy_program", file, y_entry)
                            if "nephropathy_program" in d else True, "requirements": reqs}

    return SupportRecord(file=Path(file), code=code, name=name, type=itype,
                         structure=_text(ins.get("structure")),
                         partners=[_text(p) for p in _list(ins.get("partners"), file, entry, "partners")],
                         staff=staff, rengokai_staff=rstaff, hearing=hearing, contacts=contacts,
                         checklist=checklist, declaration2=declaration2)


# ---------------------------------------------------------------------------------------------
# the Excel form (same content as the YAML, one sheet per section; docs/support_record.md §1.2)

XLSX_SHEETS = {
    "基本情報": ["項目", "値"],
    "担当者": ["区分", "id", "name", "role", "since", "until", "key_person", "publishable"],
    "ヒアリング": ["項目", "内容"],
    "訪問記録": ["no", "date", "type", "rengokai", "responders", "topics", "reaction", "committee_advice"],
    "次の対応": ["訪問no", "what", "due", "owner", "status", "done"],
    "チェックリスト": ["項目", "status", "date", "note"],
    "宣言2": ["年度", "nephropathy_program", "要件", "met", "note"],
}
STAFF_KINDS = {"保険者": "staff", "連合会": "rengokai_staff"}


def _sheet_rows(sheets: dict, name: str, file) -> list[tuple[int, dict]]:
    df = sheets.get(name)
    if df is None:
        return []
    missing = [c for c in XLSX_SHEETS[name] if c not in df.columns]
    if missing:
        raise _err(file, f"シート「{name}」の1行目（見出し）", "見出し", "、".join(map(str, df.columns)),
                   f"見出し {', '.join(XLSX_SHEETS[name])} が必要です（足りない見出し: {', '.join(missing)}）")
    out = []
    for i, row in enumerate(df.to_dict("records"), 2):  # row 1 is the header
        if all(_text(v) == "" for v in row.values()):
            continue
        out.append((i, {k: (None if _text(v) == "" else v) for k, v in row.items()}))
    return out


def read_xlsx_form(path) -> tuple[dict, dict]:
    """The Excel form → (record dict as in YAML, where-map for messages)."""
    path = Path(path)
    try:
        sheets = pd.read_excel(path, sheet_name=None, dtype=object)
    except Exception as e:  # noqa: BLE001 - a broken or locked workbook is a user mistake
        raise SupportRecordError(f"支援記録 {path.name} を Excel ファイルとして読めません: {e}") from None
    raw: dict = {"insurer": {}, "staff": [], "rengokai_staff": [], "hearing": {}, "visits": [],
                 "checklist": {}, "declaration2": {}}
    where: dict = {"insurer": "シート「基本情報」"}
    for _, r in _sheet_rows(sheets, "基本情報", path):
        key = _text(r["項目"])
        if key == "partners":
            raw["insurer"]["partners"] = [p for p in re.split(r"[、,\n]+", _text(r["値"])) if p.strip()]
        else:
            raw["insurer"][key] = r["値"]
    for i, r in _sheet_rows(sheets, "担当者", path):
        kind = _text(r["区分"])
        if kind not in STAFF_KINDS:
            raise _err(path, f"シート「担当者」{i}行目", "区分", kind, "保険者 / 連合会 のいずれかが必要です")
        raw[STAFF_KINDS[kind]].append({k: r[k] for k in XLSX_SHEETS["担当者"][1:]})
    for i, r in _sheet_rows(sheets, "ヒアリング", path):
        raw["hearing"][_text(r["項目"])] = r["内容"]
        where["hearing"] = f"シート「ヒアリング」{i}行目"
    numbers = {}
    for i, r in _sheet_rows(sheets, "訪問記録", path):
        visit = {k: r[k] for k in XLSX_SHEETS["訪問記録"][1:]}
        visit["actions"] = []
        raw["visits"].append(visit)
        k = len(raw["visits"])
        where[("visit", k)] = f"シート「訪問記録」{i}行目"
        numbers[_text(r["no"]) or str(k)] = k
    for i, r in _sheet_rows(sheets, "次の対応", path):
        no = _text(r["訪問no"])
        if no.endswith(".0"):
            no = no[:-2]
        if no not in numbers:
            raise _err(path, f"シート「次の対応」{i}行目", "訪問no", r["訪問no"],
                       f"シート「訪問記録」の no（{', '.join(numbers) or 'まだ記録がありません'}）のいずれかが必要です")
        k = numbers[no]
        raw["visits"][k - 1]["actions"].append({c: r[c] for c in XLSX_SHEETS["次の対応"][1:]})
        where[("action", k, len(raw["visits"][k - 1]["actions"]))] = f"シート「次の対応」{i}行目"
    for i, r in _sheet_rows(sheets, "チェックリスト", path):
        key = _text(r["項目"])
        raw["checklist"][key] = {c: r[c] for c in ("status", "date", "note")}
        where[("checklist", key)] = f"シート「チェックリスト」{i}行目"
    for i, r in _sheet_rows(sheets, "宣言2", path):
        year = _text(r["年度"]).removesuffix(".0")
        y = raw["declaration2"].setdefault(year, {"requirements": {}})
        where.setdefault(("declaration2", year), f"シート「宣言2」{i}行目")
        if r["nephropathy_program"] is not None:
            y["nephropathy_program"] = r["nephropathy_program"]
        y["requirements"][_text(r["要件"])] = {"met": r["met"], "note": r["note"]}
    return raw, where


def read_record(path) -> SupportRecord:
    """One insurer's record file (YAML or the Excel form), validated."""
    path = Path(path)
    if path.suffix.lower() == ".xlsx":
        raw, where = read_xlsx_form(path)
        return validate_record(raw, path, where)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as e:
        raise SupportRecordError(f"支援記録 {path.name} の YAML の書き方に誤りがあります: {e}") from None
    except UnicodeDecodeError:
        raise SupportRecordError(f"支援記録 {path.name} は UTF-8 で保存してください（Excel の様式なら .xlsx で保存）") from None
    return validate_record(raw, path)


def _demo_folder_path() -> Path:
    try:
        return settings.parameters_dir() / DEMO_FOLDER_NAME
    except ParameterError:  # installed without the parameters folder
        return Path(DEMO_FOLDER_NAME)


def demo_folder() -> Path:
    """The filled example records of the demo prefecture (parameters/support_records_demo/)."""
    folder = settings.parameters_dir() / DEMO_FOLDER_NAME
    if not folder.is_dir():
        raise ParameterError(f"支援記録の記入例のフォルダ {folder} が見つかりません。")
    return folder


#: Reference date of the example records (their story is told as of the end of FY2024).
DEMO_AS_OF = dt.date(2025, 3, 31)


def resolve_as_of(as_of=None, support_dir=None, today: dt.date | None = None) -> dt.date:
    """The reference date of the status rules (docs/support_record.md §3): `as_of` when given
    (YYYY-MM-DD), else the demo's date for the example records, else today."""
    if as_of not in (None, ""):
        try:
            return parse_date(as_of, "", "", "as_of")
        except SupportRecordError:
            raise ParameterError(f"パラメータ as_of の値「{as_of}」は使えません。{DATE_EXPECTED}が必要です。") from None
    if support_dir in (None, "") or Path(support_dir).resolve() == _demo_folder_path().resolve():
        return DEMO_AS_OF
    return today or dt.date.today()


# ---------------------------------------------------------------------------------------------
# the 連合会-wide record (docs/support_record.md §1.3)


@dataclass
class RengokaiRecord:
    """The 連合会's own checklist items (scope 連合会), one file `rengokai.yaml` per support folder."""
    file: Path
    name: str
    checklist: dict[str, dict]


def validate_rengokai_record(raw, file) -> RengokaiRecord:
    """A parsed `rengokai.yaml` → RengokaiRecord, or SupportRecordError (same messages as §1.1)."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise _err(file, "ファイル全体", "checklist", raw, "rengokai・checklist の項目をもつ形式が必要です")
    known = {"rengokai", "checklist"}
    for key in raw:
        if key not in known:
            raise _err(file, "ファイル全体", key, key, f"使える項目は {', '.join(sorted(known))} です")
    info = _mapping(raw.get("rengokai"), file, "連合会の基本情報（rengokai）", "rengokai")
    return RengokaiRecord(file=Path(file), name=_text(info.get("name")) or "国保連合会",
                          checklist=_checklist(raw.get("checklist"), rengokai_items(), "連合会", file, {}))


def read_rengokai_record(folder) -> RengokaiRecord | None:
    """`rengokai.yaml` of the support folder, validated; None when the folder has none."""
    path = Path(folder) / RENGOKAI_FILE
    if not path.is_file():
        return None
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as e:
        raise SupportRecordError(f"支援記録 {path.name} の YAML の書き方に誤りがあります: {e}") from None
    return validate_rengokai_record(raw, path)


RENGOKAI_CHECKLIST_LABELS = {"item": "項目ID", "item_label": "項目", "status": "状況", "date": "日付", "note": "メモ"}


def rengokai_checklist_table(record: RengokaiRecord | None) -> pd.DataFrame:
    """One row per 連合会-wide item: its status (未記入 when the item or the whole file is missing)."""
    cl = record.checklist if record is not None else {}
    rows = [{"item": i.id, "item_label": i.label, "status": cl.get(i.id, {}).get("status", "未記入"),
             "date": cl.get(i.id, {}).get("date"), "note": cl.get(i.id, {}).get("note", "")}
            for i in rengokai_items()]
    return pd.DataFrame(rows, columns=list(RENGOKAI_CHECKLIST_LABELS))


def rengokai_summary(table: pd.DataFrame) -> str:
    done = table[table["status"] == "済"]
    rest = table[table["status"] != "済"]
    text = f"連合会全体の項目 {len(table)}: 済 {len(done)}"
    if len(rest):
        text += "。まだ済でない項目: " + "、".join(f"{r.item_label}（{r.status}）" for r in rest.itertuples())
    return text + "。"


def load_records(folder=None) -> list[SupportRecord]:
    """Every record of the support folder (files starting with "_" or "~$" — templates, Excel lock
    files — and the `previous/` backups are skipped); two files for one insurer are an error."""
    folder = Path(folder) if folder else demo_folder()
    if not folder.is_dir():
        raise ParameterError(f"支援記録のフォルダ {folder} が見つかりません。")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in RECORD_SUFFIXES
                   and not p.name.startswith(("_", "~$", ".")) and p.name != RENGOKAI_FILE)
    records, by_code = [], {}
    for p in paths:
        r = read_record(p)
        if r.code in by_code:
            raise _err(p, "保険者の基本情報（insurer）", "code", r.code,
                       f"保険者ごとに1ファイルが必要です（{by_code[r.code]} にも同じ保険者があります）")
        by_code[r.code] = p.name
        records.append(r)
    return records


# ---------------------------------------------------------------------------------------------
# status rules (docs/support_record.md §3)


def fiscal_year_of(date: dt.date) -> int:
    """年度 (April–March): 2025-03-31 → 2024, 2025-04-01 → 2025."""
    return date.year if date.month >= 4 else date.year - 1


def _current(p: Person, as_of: dt.date) -> bool:
    return (p.since is None or p.since <= as_of) and (p.until is None or p.until >= as_of)


def insurer_status(records, as_of: dt.date, contact_interval_days: int = DEFAULT_CONTACT_INTERVAL_DAYS,
                   master: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per insurer (records, plus the municipalities of `master` without a record): the
    support status on `as_of` (docs/support_record.md §3). Contacts dated after `as_of` are ignored."""
    fy = fiscal_year_of(as_of)
    rows = []
    for r in records:
        past = [c for c in r.contacts if c.date <= as_of]
        last = max((c.date for c in past), default=None)
        open_actions = [a for c in past for a in c.actions if a.status != "完了"]
        overdue = [a for a in open_actions if a.due < as_of]
        current_r = [p for p in r.rengokai_staff.values() if _current(p, as_of)]
        key_people = [p for p in r.staff.values() if p.key_person and _current(p, as_of)]
        turnover = [p for p in key_people if last is not None and p.since is not None and p.since > last]
        handover = bool(current_r) and last is not None and all(p.since is not None and p.since > last for p in current_r)
        flags = []
        if last is None:
            flags.append("支援記録なし")
        elif (as_of - last).days > contact_interval_days:
            flags.append("支援間隔超過")
        if overdue:
            flags.append("期限超過の対応あり")
        if turnover:
            flags.append("保険者の担当交代後に未対応")
        if not current_r:
            flags.append("連合会の担当者なし")
        elif handover:
            flags.append("連合会の引継ぎ後に未対応")
        elif len(current_r) == 1:
            flags.append("連合会の担当が1人")
        rows.append({
            "code": r.code, "name": r.name, "type": r.type,
            "contacts_fy": sum(fiscal_year_of(c.date) == fy for c in past),
            "contacts_total": len(past),
            "supported_fy": any(fiscal_year_of(c.date) == fy for c in past),
            "supported_ever": bool(past),
            "committee_ever": any(c.type in COMMITTEE_TYPES or c.committee_advice for c in past),
            "last_contact": last,
            "days_since_contact": (as_of - last).days if last else None,
            "open_actions": len(open_actions), "overdue_actions": len(overdue),
            "rengokai_current": len(current_r),
            "checklist_done": sum(v["status"] == "済" for v in r.checklist.values()),
            "checklist_items": len(insurer_items(r.type)),
            "flags": "、".join(flags),
        })
    out = pd.DataFrame(rows, columns=STATUS_COLUMNS)
    if master is not None:
        munis = master[master["kind"].fillna("muni") == "muni"] if "kind" in master.columns else master
        name_col = "name" if "name" in munis.columns else "muni_name"
        have = set(out["code"])
        extra = munis[~munis["muni_code"].astype(str).str.zfill(5).isin(have)]
        if len(extra):
            add = pd.DataFrame({"code": extra["muni_code"].astype(str).str.zfill(5), "name": extra[name_col],
                                "type": "市町村", "contacts_fy": 0, "contacts_total": 0, "supported_fy": False,
                                "supported_ever": False, "committee_ever": False, "last_contact": None,
                                "days_since_contact": None, "open_actions": 0, "overdue_actions": 0,
                                "rengokai_current": 0, "checklist_done": 0,
                                "checklist_items": len(insurer_items("市町村")), "flags": "支援記録なし"})
            out = pd.concat([out, add], ignore_index=True)
    order = {t: i for i, t in enumerate(INSURER_TYPES)}
    return out.sort_values(["type", "code"], key=lambda s: s.map(order) if s.name == "type" else s,
                           ignore_index=True)


STATUS_COLUMNS = ["code", "name", "type", "contacts_fy", "contacts_total", "supported_fy", "supported_ever",
                  "committee_ever", "last_contact", "days_since_contact", "open_actions", "overdue_actions",
                  "rengokai_current", "checklist_done", "checklist_items", "flags"]
STATUS_LABELS = {
    "priority_rank": "支援優先度の順位", "priority_score": "支援優先度の得点", "priority_reasons": "支援優先度の理由",
    "code": "コード", "name": "保険者", "type": "種別", "contacts_fy": "今年度の支援回数",
    "contacts_total": "これまでの支援回数", "supported_fy": "今年度の支援", "supported_ever": "支援を受けたことがある",
    "committee_ever": "支援・評価委員会の支援", "last_contact": "最後の支援日", "days_since_contact": "経過日数",
    "open_actions": "未完了の対応", "overdue_actions": "期限超過の対応", "rengokai_current": "連合会の担当者数",
    "checklist_done": "チェックリスト済", "checklist_items": "チェックリスト項目数", "flags": "注意",
}


def coverage_table(status: pd.DataFrame) -> pd.DataFrame:
    """Support coverage by insurer type (docs/support_record.md §3.2): insurers, supported this
    fiscal year, ever, by the 支援・評価委員会 ever (= 累積支援率 of seed 001 for 市町村)."""
    g = status.groupby("type", sort=False)
    out = pd.DataFrame({
        "insurers": g.size(),
        "supported_fy": g["supported_fy"].sum(),
        "supported_ever": g["supported_ever"].sum(),
        "committee_ever": g["committee_ever"].sum(),
    }).reset_index()
    for c in ("supported_fy", "supported_ever", "committee_ever"):
        out[f"{c}_pct"] = (100 * out[c] / out["insurers"]).round(1)
    return out


COVERAGE_LABELS = {"type": "種別", "insurers": "保険者数", "supported_fy": "今年度支援", "supported_fy_pct": "今年度支援率（%）",
                   "supported_ever": "これまでに支援", "supported_ever_pct": "支援率（累積、%）",
                   "committee_ever": "支援・評価委員会の支援（累積）", "committee_ever_pct": "累積支援率（%）"}


def open_actions(records, as_of: dt.date) -> pd.DataFrame:
    """Every agreed action not 完了, oldest due first, with days overdue (0 when due today or later)."""
    rows = []
    for r in records:
        for c in r.contacts:
            if c.date > as_of:
                continue
            for a in c.actions:
                if a.status == "完了":
                    continue
                rows.append({"code": r.code, "name": r.name, "agreed": c.date, "what": mask_names(a.what, r.staff.values()),
                             "owner": a.owner, "status": a.status, "due": a.due,
                             "days_overdue": max((as_of - a.due).days, 0), "overdue": a.due < as_of})
    cols = ["code", "name", "agreed", "what", "owner", "status", "due", "days_overdue", "overdue"]
    return pd.DataFrame(rows, columns=cols).sort_values(["due", "code"], ignore_index=True)


ACTION_LABELS = {"code": "コード", "name": "保険者", "agreed": "合意した日", "what": "次の対応", "owner": "担当",
                 "status": "状況", "due": "期限", "days_overdue": "超過日数", "overdue": "期限超過"}


def checklist_matrix(records) -> pd.DataFrame:
    """Status of each checklist item for each insurer it applies to (未記入 when not recorded)."""
    rows = []
    for r in records:
        for item in insurer_items(r.type):
            rows.append({"code": r.code, "name": r.name, "type": r.type, "item": item.id, "item_label": item.label,
                         "status": r.checklist.get(item.id, {}).get("status", "未記入")})
    return pd.DataFrame(rows, columns=["code", "name", "type", "item", "item_label", "status"])


def checklist_completion(records) -> pd.DataFrame:
    """Per item across insurers (docs/support_record.md §3.4): insurers it applies to (対象外 removed),
    済, 実施中, 未着手・未記入, and the share 済 — low shares show where the 連合会's process is weak."""
    m = checklist_matrix(records)
    m = m[m["status"] != "対象外"]
    order = [i.id for i in checklist_items() if i.scope == "保険者"]
    labels = {i.id: i.label for i in checklist_items()}
    counts = pd.crosstab(m["item"], m["status"]).reindex(index=order, fill_value=0)
    for s in ("済", "実施中", "未着手", "未記入"):
        if s not in counts.columns:
            counts[s] = 0
    out = pd.DataFrame({"item": order, "item_label": [labels[i] for i in order],
                        "applicable": counts.sum(axis=1).to_numpy(), "done": counts["済"].to_numpy(),
                        "in_progress": counts["実施中"].to_numpy(),
                        "not_started": (counts["未着手"] + counts["未記入"]).to_numpy()})
    out["done_pct"] = np.where(out["applicable"] > 0, (100 * out["done"] / out["applicable"].where(out["applicable"] > 0)).round(1), np.nan)
    return out


CHECKLIST_LABELS = {"item": "項目ID", "item_label": "項目", "applicable": "対象の保険者数", "done": "済",
                    "in_progress": "実施中", "not_started": "未着手・未記入", "done_pct": "済の割合（%）"}


# ---------------------------------------------------------------------------------------------
# 宣言2 over years (docs/support_record.md §4, seed 003)


def declaration2_long(records, fiscal_years) -> pd.DataFrame:
    """One row per insurer × fiscal year × requirement (+ the 全要件達成 row): met (bool) and
    reported. A year without an answer counts as not met (未回答)."""
    rows = []
    for r in records:
        for fy in fiscal_years:
            answers = r.declaration2.get(int(fy))
            table = declaration2_table(answers or {"requirements": {}})
            for t in table.itertuples():
                rows.append({"code": r.code, "name": r.name, "type": r.type, "fy": int(fy), "key": t.key,
                             "mark": t.番号, "met": t.状況 == "満たしている", "reported": answers is not None})
            rows.append({"code": r.code, "name": r.name, "type": r.type, "fy": int(fy), "key": "all",
                         "mark": ALL_REQUIREMENTS_LABEL, "met": answers is not None and not (table["不足"] == "不足").any(),
                         "reported": answers is not None})
    return pd.DataFrame(rows, columns=["code", "name", "type", "fy", "key", "mark", "met", "reported"])


def declaration2_by_year(records, fiscal_years, insurer_type: str = "市町村", denominator: int | None = None) -> pd.DataFrame:
    """Seed 003's table: per requirement ①–⑤ and 全要件達成, the number and share of insurers of
    `insurer_type` meeting it, by fiscal year. `denominator`: all insurers of the type (e.g. the
    municipalities of the prefecture); insurers without a record or answer count as not meeting."""
    long = declaration2_long([r for r in records if r.type == insurer_type], fiscal_years)
    n = denominator if denominator is not None else len({r.code for r in records if r.type == insurer_type})
    marks = [m for m, _ in DECLARATION2_REQUIREMENTS.values()] + [ALL_REQUIREMENTS_LABEL]
    met = long[long["met"]].groupby(["mark", "fy"]).size()
    reported = long[long["reported"]].groupby("fy")["code"].nunique()
    out = pd.MultiIndex.from_product([marks, [int(f) for f in fiscal_years]], names=["mark", "fy"]).to_frame(index=False)
    out["met"] = met.reindex(pd.MultiIndex.from_frame(out[["mark", "fy"]]), fill_value=0).to_numpy()
    out["insurers"] = n
    out["reported"] = out["fy"].map(reported).fillna(0).astype(int)
    out["met_pct"] = np.where(n > 0, (100 * out["met"] / max(n, 1)).round(1), np.nan)
    texts = {m: t for m, t in DECLARATION2_REQUIREMENTS.values()}
    texts[ALL_REQUIREMENTS_LABEL] = "①〜④と（糖尿病性腎症の取組では）⑤をすべて満たす"
    out["requirement"] = out["mark"].map(texts)
    return out[["mark", "requirement", "fy", "met", "insurers", "met_pct", "reported"]]


def declaration2_wide(by_year: pd.DataFrame) -> pd.DataFrame:
    """`declaration2_by_year` laid out as seed 003 prints it: one row per requirement, per year
    "件数（%）"."""
    t = by_year.assign(cell=by_year["met"].astype(str) + "（" + by_year["met_pct"].map("{:.1f}%".format) + "）")
    wide = t.pivot(index="mark", columns="fy", values="cell").reindex(pd.unique(t["mark"]))
    wide.columns = [f"{c}年度" for c in wide.columns]
    return wide.reset_index().rename(columns={"mark": "要件"})


def declaration2_changes(records, fiscal_years) -> pd.DataFrame:
    """Insurers whose 全要件達成 changed between consecutive fiscal years (新たに達成 / 未達成に戻った)."""
    long = declaration2_long(records, fiscal_years)
    allr = long[long["key"] == "all"].pivot(index=["code", "name", "type"], columns="fy", values="met")
    rows = []
    years = [int(f) for f in fiscal_years]
    for prev, cur in zip(years, years[1:]):
        gained = allr.index[~allr[prev] & allr[cur]]
        lost = allr.index[allr[prev] & ~allr[cur]]
        rows += [{"code": c, "name": n, "type": t, "fy": cur, "change": "新たに達成"} for c, n, t in gained]
        rows += [{"code": c, "name": n, "type": t, "fy": cur, "change": "未達成に戻った"} for c, n, t in lost]
    return pd.DataFrame(rows, columns=["code", "name", "type", "fy", "change"])


# ---------------------------------------------------------------------------------------------
# committee views: the history without names, the coverage heat map, one page per insurer


def history_table(records, as_of: dt.date) -> pd.DataFrame:
    """Every contact up to `as_of`, names replaced by roles unless publishable (§5)."""
    rows = []
    for r in records:
        people = list(r.staff.values()) + list(r.rengokai_staff.values())
        for c in r.contacts:
            if c.date > as_of:
                continue
            rows.append({
                "code": r.code, "name": r.name, "date": c.date, "fy": fiscal_year_of(c.date), "type": c.type,
                "rengokai": "、".join(person_label(r.rengokai_staff[i]) for i in c.rengokai),
                "responders": "、".join(person_label(r.staff[i]) for i in c.responders),
                "topics": mask_names(c.topics, people), "reaction": mask_names(c.reaction, people),
                "committee_advice": mask_names(c.committee_advice, people),
                "actions": "；".join(f"{mask_names(a.what, people)}（{a.owner}・期限 {a.due:%Y-%m-%d}・{a.status}）"
                                    for a in c.actions)})
    cols = ["code", "name", "date", "fy", "type", "rengokai", "responders", "topics", "reaction",
            "committee_advice", "actions"]
    return pd.DataFrame(rows, columns=cols)


HISTORY_LABELS = {"code": "コード", "name": "保険者", "date": "日付", "fy": "年度", "type": "種別",
                  "rengokai": "連合会の対応者", "responders": "保険者の対応者", "topics": "協議内容",
                  "reaction": "保険者の反応", "committee_advice": "支援・評価委員会の助言", "actions": "次の対応"}


def contacts_by_year(status: pd.DataFrame, history: pd.DataFrame, fiscal_years) -> pd.DataFrame:
    """Number of contacts per insurer × fiscal year, every insurer of `status` (0 where none):
    the data of the coverage heat map."""
    years = [int(f) for f in fiscal_years]
    counts = history.groupby(["code", "fy"]).size()
    grid = pd.MultiIndex.from_product([status["code"], years], names=["code", "fy"])
    out = counts.reindex(grid, fill_value=0).rename("contacts").reset_index()
    names = status.set_index("code")["name"]
    out["insurer"] = out["code"].map(names)
    out["fy_label"] = out["fy"].map(lambda y: f"{y}年度")
    return out


def insurer_page(record: SupportRecord, status_row: pd.Series, as_of: dt.date, fiscal_years) -> str:
    """Markdown of one insurer's page for the committee (profile, history, open actions, checklist,
    宣言2 by year). Names appear only for people marked publishable."""
    r = record
    people = list(r.staff.values()) + list(r.rengokai_staff.values())
    lines = [f"### {r.name}（{r.type}・{r.code}）", ""]
    if r.structure:
        lines.append(f"- 実施体制: {mask_names(r.structure, people)}")
    key = [person_label(p) for p in r.staff.values() if p.key_person and _current(p, as_of)]
    lines.append(f"- キーパーソン: {'、'.join(key) if key else '（未登録）'}")
    cur = [person_label(p) for p in r.rengokai_staff.values() if _current(p, as_of)]
    lines.append(f"- 連合会の担当: {'、'.join(cur) if cur else '（未定）'}")
    if r.partners:
        lines.append(f"- 連携している機関: {'、'.join(r.partners)}")
    last = status_row["last_contact"]
    lines.append(f"- 最後の支援: {last:%Y-%m-%d}" if isinstance(last, dt.date) else "- 最後の支援: まだありません")
    if status_row["flags"]:
        lines.append(f"- **注意: {status_row['flags']}**")
    rank = status_row.get("priority_rank")
    if rank is not None and not pd.isna(rank):
        lines.append(f"- 支援優先度（ノートブック 01 と同じ得点）: 県内 {int(rank)} 位（得点 {status_row['priority_score']:.2f}）。"
                     f"{status_row['priority_reasons']}")
    for k, label in hearing_items(r.type).items():
        if r.hearing.get(k):
            lines.append(f"- {label}: {mask_names(r.hearing[k], people)}")
    lines += ["", "**支援の経過**", ""]
    past = [c for c in r.contacts if c.date <= as_of]
    if not past:
        lines.append("支援の記録はまだありません。")
    for c in past:
        resp = "、".join(person_label(r.staff[i]) for i in c.responders) or "—"
        lines.append(f"- {c.date:%Y-%m-%d} {c.type}（対応: {resp}）: {mask_names(c.topics, people)}"
                     + (f" ／ 反応: {mask_names(c.reaction, people)}" if c.reaction else "")
                     + (f" ／ 委員会の助言: {mask_names(c.committee_advice, people)}" if c.committee_advice else ""))
    open_ = [(c, a) for c in past for a in c.actions if a.status != "完了"]
    lines += ["", "**未完了の対応**", ""]
    if not open_:
        lines.append("ありません。")
    for c, a in sorted(open_, key=lambda ca: ca[1].due):
        late = f"（{(as_of - a.due).days}日超過）" if a.due < as_of else ""
        lines.append(f"- 期限 {a.due:%Y-%m-%d}{late}: {mask_names(a.what, people)}（{a.owner}・{a.status}）")
    lines += ["", "**チェックリスト**", ""]
    for item in insurer_items(r.type):
        s = r.checklist.get(item.id, {}).get("status", "未記入")
        lines.append(f"- {item.label}: {s}")
    lines += ["", "**宣言2（年度ごと）**", ""]
    years = [int(f) for f in fiscal_years]
    if not any(y in r.declaration2 for y in years):
        lines.append("宣言2の点検の記録はありません。")
    for y in years:
        if y in r.declaration2:
            lines.append(f"- {y}年度: {declaration2_verdict(declaration2_table(r.declaration2[y])).removeprefix('判定: ')}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# writing a record back (the JupyterLab form; docs/support_record.md §6)

PREVIOUS_FOLDER = "previous"


def _round_trip(text: str | None = None):
    """ruamel.yaml in round-trip mode (a maintained library: PyYAML drops comments): a file written back
    keeps the staff's comments, key order, quoting and list indentation (docs/support_record.md §6).
    Returns (YAML object, loaded data or None)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    rt = YAML(typ="rt")
    rt.allow_unicode = True
    rt.preserve_quotes = True
    rt.width = 4096  # no folding of long Japanese lines
    rt.representer.ignore_aliases = lambda *_: True  # the same date twice is written twice, never as &id001/*id001
    if not text:
        return rt, None
    # the staff's list style: "- id: A" at the key's column (PyYAML's) or indented ("  - id: A", the template's)
    _, sequence, offset = load_yaml_guess_indent(text)
    rt.indent(mapping=2, sequence=sequence or 2, offset=offset or 0)
    return rt, rt.load(text)



def _plain_text(value):
    """Multi-line text from a Textarea as a YAML block (|), one line as is."""
    from ruamel.yaml.scalarstring import LiteralScalarString

    return LiteralScalarString(value) if isinstance(value, str) and "\n" in value else value


def rewrite_yaml(path, change, validate, now: dt.datetime | None = None) -> Path | None:
    """Change a YAML record in place: `change(data)` edits the round-trip mapping, `validate(data, path)`
    raises before anything is written; the previous file is kept under
    `previous/<name>.<timestamp>.yaml` and the new one written atomically (`hsutils.core.files`).
    Returns the kept previous version (None when the file did not exist yet)."""
    import io

    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError as RuamelError

    path = Path(path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise SupportRecordError(f"支援記録 {path.name}: 入力フォームで書き込めるのは YAML の記録だけです"
                                 "（Excel の様式は Excel で記入してください）")
    before = path.read_bytes() if path.exists() else None
    try:
        rt, data = _round_trip(before.decode("utf-8-sig") if before else None)
    except RuamelError as e:
        raise SupportRecordError(f"支援記録 {path.name} の YAML の書き方に誤りがあります: {e}") from None
    data = CommentedMap() if data is None else data
    change(data)
    validate(data, path)  # raises before anything is written
    kept = None
    if before is not None:
        stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
        kept = files.atomic_write_bytes(path.parent / PREVIOUS_FOLDER / f"{path.stem}.{stamp}{path.suffix}", before)
    buf = io.StringIO()
    rt.dump(data, buf)
    files.atomic_write_text(path, buf.getvalue())
    return kept


def _merge_checklist(data, updates: dict | None) -> None:
    if not updates:
        return
    if data.get("checklist") is None:
        data["checklist"] = {}
    for key, value in updates.items():
        given = {k: _plain_text(v) for k, v in value.items() if v not in (None, "")}
        entry = data["checklist"].get(key)
        if isinstance(entry, dict):  # keep the entry's style ({status: …}) and a note written by hand
            entry.update(given)
        else:
            data["checklist"][key] = given


def add_visit(path, visit: dict, checklist: dict | None = None, now: dt.datetime | None = None) -> Path:
    """Append one contact (and checklist updates) to an insurer's YAML record (`rewrite_yaml`:
    validated first, previous version kept, atomic, comments kept). Returns the kept previous version."""
    def change(data):
        if data.get("visits") is None:
            data["visits"] = []
        entry = {k: _plain_text(v) for k, v in visit.items() if v not in (None, "", [])}
        if "actions" in visit:
            entry["actions"] = [{k: _plain_text(v) for k, v in a.items() if v not in (None, "")} for a in visit["actions"]]
        data["visits"].append(entry)
        _merge_checklist(data, checklist)

    return rewrite_yaml(path, change, validate_record, now)


def set_rengokai_checklist(path, updates: dict, now: dt.datetime | None = None) -> Path | None:
    """Set 連合会-wide checklist items in `rengokai.yaml` (created when missing), same validation and
    atomic save as `add_visit`. Returns the kept previous version (None for a new file)."""
    return rewrite_yaml(path, lambda data: _merge_checklist(data, updates), validate_rengokai_record, now)


#: Widths of the form's fields: wide enough for Japanese text (ipywidgets' defaults are ~20 characters).
_FORM_LABEL_WIDTH = "10em"
_FORM_FIELD_WIDTH = "44em"
_UNCHANGED = "（変更なし）"
#: Room for the checklist dropdown itself: 「（変更なし）」 (6 full-width characters) plus the arrow and padding.
_CHECK_CHOICE_WIDTH = "10em"
#: ipywidgets' DatePicker is the browser's own date field: its order (年/月/日 or mm/dd/yyyy) follows the
#: browser's language, not the notebook; the hint beside each date picker says so.
DATE_HINT = ("表示の順はブラウザの言語設定によります（mm/dd/yyyy なら 月/日/年）。"
             "右端のカレンダーの印から選ぶと確実です。")


def _date_row(picker):
    """A date picker with the format hint beside it (the value stays on `picker`)."""
    import ipywidgets as widgets

    hint = widgets.HTML(f'<span style="color:#555;font-size:90%">{DATE_HINT}</span>',
                        layout=widgets.Layout(margin="0 0 0 1em"))
    return widgets.HBox([picker, hint])


def _checklist_dropdowns(items) -> dict:
    """One dropdown per checklist item, its label column as wide as the longest title and the dropdown wide
    enough for every state (the browser check saw 「（変更な」 and a cut 「…個別…」 at 19 em / 32 em)."""
    import ipywidgets as widgets
    from hsutils.publish import widgets as panels

    label = panels.label_width(i.title for i in items)
    return {i.id: widgets.Dropdown(options=[_UNCHANGED, *CHECK_STATES], description=i.title, value=_UNCHANGED,
                                   tooltip=i.label, style={"description_width": label},
                                   layout=widgets.Layout(width=f"calc({label} + {_CHECK_CHOICE_WIDTH})"))
            for i in items}


def _form_message(kind: str, text: str) -> str:
    """A result line of the form: errors red, success green (HTML, the text escaped)."""
    import html

    colour = {"error": "#B00020", "ok": "#1B5E20"}[kind]
    mark = {"error": "保存できませんでした", "ok": "保存しました"}[kind]
    return (f'<div style="color:{colour};white-space:pre-wrap;line-height:1.5"><b>{mark}</b><br>'
            f"{html.escape(text)}</div>")


def _form_path(path: Path) -> str:
    """Where the form writes, as the user can find it: relative to the repository when inside it, else
    the full path (the form runs only interactively on the user's own machine, never in a report)."""
    path = Path(path).resolve()
    root = settings.work_root().resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _saved_text(path: Path, kept: Path | None) -> str:
    where = f"記録: {_form_path(path)}"
    return where + (f"\n前の版: {_form_path(kept)}" if kept is not None else "\n（新しいファイルを作りました）")


def visit_form(path):
    """ipywidgets form for one insurer's YAML record: add a contact with one agreed action and tick
    checklist items, saved with `add_visit` (validated, previous version kept, comments kept). The
    result line names the saved file and the kept version, or shows the Japanese validation message.
    Call only when `interactive` (docs/design.md §9, docs/support_record.md §6)."""
    import ipywidgets as widgets

    path = Path(path)
    record = read_record(path)
    style = {"description_width": _FORM_LABEL_WIDTH}
    wide = widgets.Layout(width=_FORM_FIELD_WIDTH)
    box = lambda rows: widgets.Layout(width=_FORM_FIELD_WIDTH, height=f"{1.6 * rows + 0.6:.1f}em")
    choice = widgets.Layout(width=f"calc({_FORM_LABEL_WIDTH} + 14em)")  # 「支援・評価委員会」 in full
    r_opts = [(person_label(p), p.id) for p in record.rengokai_staff.values()]
    s_opts = [(person_label(p), p.id) for p in record.staff.values()]
    w = {
        "date": widgets.DatePicker(description="日付", value=dt.date.today(), style=style),
        "type": widgets.Dropdown(options=list(CONTACT_TYPES), description="種別", style=style, layout=choice),
        "rengokai": widgets.SelectMultiple(options=r_opts, rows=max(2, min(4, len(r_opts))),
                                           description="連合会の対応者", style=style, layout=wide),
        "responders": widgets.SelectMultiple(options=s_opts, rows=max(2, min(4, len(s_opts))),
                                             description="保険者の対応者", style=style, layout=wide),
        "topics": widgets.Textarea(description="協議内容", style=style, layout=box(3)),
        "reaction": widgets.Textarea(description="保険者の反応", style=style, layout=box(2)),
        "committee_advice": widgets.Textarea(description="委員会の助言", style=style, layout=box(2)),
        "action": widgets.Text(description="次の対応", placeholder="合意した次の対応（なければ空欄）",
                               style=style, layout=wide),
        "due": widgets.DatePicker(description="期限", style=style),
        "owner": widgets.Dropdown(options=list(ACTION_OWNERS), description="担当", style=style, layout=choice),
    }
    hint = widgets.HTML('<span style="color:#555">対応者は Ctrl キー（Mac は ⌘）を押しながらクリックすると複数選べます。'
                        "次の対応を書いたときは期限も入れてください。</span>")
    checks = _checklist_dropdowns(insurer_items(record.type))
    out = widgets.HTML()
    button = widgets.Button(description="保存", button_style="primary", icon="save")

    def save(_):
        visit = {"date": w["date"].value, "type": w["type"].value, "rengokai": list(w["rengokai"].value),
                 "responders": list(w["responders"].value), "topics": w["topics"].value.strip(),
                 "reaction": w["reaction"].value.strip(), "committee_advice": w["committee_advice"].value.strip()}
        if w["action"].value.strip():
            visit["actions"] = [{"what": w["action"].value.strip(), "due": w["due"].value, "owner": w["owner"].value,
                                 "status": "未着手"}]
        ticks = {k: {"status": c.value, "date": w["date"].value} for k, c in checks.items() if c.value != _UNCHANGED}
        try:
            kept = add_visit(path, visit, ticks)
        except ParameterError as e:
            out.value = _form_message("error", str(e))
        else:
            out.value = _form_message("ok", _saved_text(path, kept))
            for k in ("topics", "reaction", "committee_advice", "action"):  # ready for the next visit
                w[k].value = ""
            w["due"].value = None
            for c in checks.values():
                c.value = _UNCHANGED

    button.on_click(save)
    title = widgets.HTML(f"<h4 style='margin:0.3em 0'>{record.name}（{record.type}・{record.code}）の支援記録に追加</h4>"
                         f"<span style='color:#555'>保存先: {_form_path(path)}</span>")
    shown = [_date_row(c) if isinstance(c, widgets.DatePicker) else c for c in w.values()]
    return widgets.VBox([title, *shown, hint, widgets.HTML("<b>チェックリスト（変える項目だけ選ぶ）</b>"),
                         *checks.values(), button, out])


def rengokai_form(folder):
    """ipywidgets form for the 連合会-wide checklist items (`rengokai.yaml` of the support folder,
    created when missing), saved with `set_rengokai_checklist`."""
    import ipywidgets as widgets

    path = Path(folder) / RENGOKAI_FILE
    record = read_rengokai_record(folder)
    current = record.checklist if record else {}
    rows, fields = [], {}
    items = rengokai_items()
    for i, status in zip(items, _checklist_dropdowns(items).values()):
        now = current.get(i.id, {}).get("status")
        note = widgets.Text(placeholder="メモ（任意）", layout=widgets.Layout(width="24em"))
        fields[i.id] = (status, note)
        rows.append(widgets.HBox([status, note, widgets.HTML(f"<span style='color:#555'>いま: {now or '未記入'}</span>")]))
    day = widgets.DatePicker(description="日付", value=dt.date.today(), style={"description_width": "4em"})
    out = widgets.HTML()
    button = widgets.Button(description="保存", button_style="primary", icon="save")

    def save(_):
        updates = {k: {"status": s.value, "date": day.value, "note": n.value.strip()}
                   for k, (s, n) in fields.items() if s.value != _UNCHANGED}
        if not updates:
            out.value = _form_message("error", "変える項目を選んでください（「（変更なし）」のままです）。")
            return
        try:
            kept = set_rengokai_checklist(path, updates)
        except ParameterError as e:
            out.value = _form_message("error", str(e))
        else:
            out.value = _form_message("ok", _saved_text(path, kept))

    button.on_click(save)
    title = widgets.HTML("<h4 style='margin:0.3em 0'>連合会全体のチェックリスト</h4>"
                         f"<span style='color:#555'>保存先: {_form_path(path)}</span>")
    return widgets.VBox([title, *rows, _date_row(day), button, out])


# ---------------------------------------------------------------------------------------------
# notebook helpers: folders, labels, summaries (notebook 09 stays thin)

SOURCE_LABEL = "支援カルテ（国保連合会の支援記録）"
CHANGE_LABELS = {"code": "コード", "name": "保険者", "type": "種別", "fy": "年度", "change": "全要件達成の変化"}


def records_folder(support_dir=None) -> Path:
    """The support folder of a run: `support_dir`, or the demo's example records."""
    return Path(support_dir) if support_dir not in (None, "") else demo_folder()


def shown_folder(folder) -> str:
    """The folder as a report may print it (no absolute path of the machine)."""
    return settings.shown_path(folder)


def record_path(records, code=None) -> Path:
    """The file of one insurer's record (the first record when `code` is None)."""
    if not records:
        raise ParameterError("支援記録のフォルダに記録がありません。様式 data_templates/support_record_template.yaml を使ってください。")
    if code in (None, ""):
        return records[0].file
    for r in records:
        if r.code == str(code):
            return r.file
    raise ParameterError(f"保険者のコード「{code}」の支援記録がありません（あるコード: {', '.join(r.code for r in records)}）")


def labelled(df: pd.DataFrame, labels: dict) -> pd.DataFrame:
    """A committee table with Japanese headers (booleans as あり/なし, dates as YYYY-MM-DD)."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == bool:
            out[c] = out[c].map({True: "あり", False: ""})
        elif out[c].map(lambda v: isinstance(v, dt.date)).any():
            out[c] = out[c].map(lambda v: v.isoformat() if isinstance(v, dt.date) else "")
    if "days_since_contact" in out.columns:
        out["days_since_contact"] = out["days_since_contact"].astype("Int64")
    return out.rename(columns=labels)


def insurer_pages(records, status: pd.DataFrame, as_of: dt.date, fiscal_years, which="all"):
    """(code, Markdown) of the insurers asked for (`which`: "all" or a list of codes)."""
    wanted = None if which in (None, "all") else {str(c) for c in (which if isinstance(which, (list, tuple)) else [which])}
    rows = status.set_index("code")
    if wanted is not None:
        unknown = sorted(wanted - {r.code for r in records})
        if unknown:
            raise ParameterError(f"パラメータ insurer_pages のコード {unknown} の支援記録がありません"
                                 f"（あるコード: {', '.join(r.code for r in records)}）")
    return [(r.code, insurer_page(r, rows.loc[r.code], as_of, fiscal_years))
            for r in records if wanted is None or r.code in wanted]


def checklist_heat_frame(completion: pd.DataFrame) -> pd.DataFrame:
    """Long frame (項目, 状況, 保険者数) of `checklist_completion` for the heat table."""
    parts = [("済", "done"), ("実施中", "in_progress"), ("未着手・未記入", "not_started")]
    frames = [pd.DataFrame({"項目": completion["item_label"], "状況": label, "保険者数": completion[col]})
              for label, col in parts]
    out = pd.concat(frames, ignore_index=True)
    out["項目"] = pd.Categorical(out["項目"], categories=list(completion["item_label"]))
    out["状況"] = pd.Categorical(out["状況"], categories=[p[0] for p in parts])
    return out.sort_values(["項目", "状況"], ignore_index=True)


def status_summary(status: pd.DataFrame) -> str:
    """Japanese sentences on coverage and the insurers that need attention."""
    munis = status[status["type"] == "市町村"]
    lines = [f"市町村 {len(munis)}: 今年度支援 {int(munis['supported_fy'].sum())}、これまでに支援 "
             f"{int(munis['supported_ever'].sum())}、支援・評価委員会の支援（累積） {int(munis['committee_ever'].sum())}"
             f"（累積支援率 {100 * munis['committee_ever'].mean():.1f}%）。" if len(munis) else "市町村の記録はありません。"]
    for flag in ("支援記録なし", "支援間隔超過", "期限超過の対応あり", "保険者の担当交代後に未対応", "連合会の引継ぎ後に未対応",
                 "連合会の担当者なし"):
        names = status.loc[status["flags"].str.contains(flag), "name"].tolist()
        if names:
            lines.append(f"{flag}（{len(names)}）: {'、'.join(names)}")
    return "\n".join(lines)


def actions_summary(actions: pd.DataFrame) -> str:
    late = actions[actions["overdue"]]
    if actions.empty:
        return "未完了の対応はありません。"
    text = f"未完了の対応 {len(actions)}件、うち期限超過 {len(late)}件"
    if len(late):
        text += f"（最も古い期限 {late['due'].min():%Y-%m-%d}、{int(late['days_overdue'].max())}日超過）"
    return text + "。"


def checklist_summary(completion: pd.DataFrame) -> str:
    c = completion[completion["applicable"] > 0]
    if c.empty:
        return "チェックリストの記録はありません。"
    weakest = c.loc[c["done_pct"].idxmin()]
    return (f"「済」の割合が最も低い項目: {weakest['item_label']}（{int(weakest['done'])}/{int(weakest['applicable'])}、"
            f"{weakest['done_pct']:.1f}%）。")


def declaration2_summary(by_year: pd.DataFrame) -> str:
    last = by_year[by_year["fy"] == by_year["fy"].max()]
    allr = last[last["mark"] == ALL_REQUIREMENTS_LABEL].iloc[0]
    reqs = last[last["mark"] != ALL_REQUIREMENTS_LABEL]
    low = reqs.loc[reqs["met_pct"].idxmin()]
    return (f"{int(allr['fy'])}年度: 全要件達成 {int(allr['met'])}/{int(allr['insurers'])}市町村（{allr['met_pct']:.1f}%、"
            f"自己点検の回答 {int(allr['reported'])}）。最も達成の少ない要件は {low['mark']}（{int(low['met'])}市町村）。")


def declaration2_heat_frame(by_year: pd.DataFrame) -> pd.DataFrame:
    """Long frame (要件, 年度, 割合 as a fraction) of `declaration2_by_year` for the heat table."""
    marks = list(pd.unique(by_year["mark"]))
    out = pd.DataFrame({"要件": pd.Categorical(by_year["mark"], categories=marks),
                        "年度": by_year["fy"].map(lambda y: f"{y}年度"), "割合": by_year["met_pct"] / 100})
    return out.sort_values(["要件", "年度"], ignore_index=True)


# ---------------------------------------------------------------------------------------------
# support priority of notebook 01 (hsutils.patterns.overview.support_priority; docs/support_record.md §3.5)

PRIORITY_COLUMNS = {"rank": "priority_rank", "score": "priority_score", "reasons": "priority_reasons"}


def with_priority(status: pd.DataFrame, priority: pd.DataFrame | None) -> pd.DataFrame:
    """`status` with the support-priority rank, score and reasons of notebook 01 for each
    municipality (`priority`: the frame of `hsutils.patterns.overview.support_priority`); empty for the
    other insurer types and when no priority is given."""
    out = status.copy()
    if priority is None or priority.empty:
        for c in PRIORITY_COLUMNS.values():
            out[c] = pd.NA
        return out
    p = priority[["muni_code", *PRIORITY_COLUMNS]].rename(columns={"muni_code": "code", **PRIORITY_COLUMNS})
    p["code"] = p["code"].astype(str).str.zfill(5)
    out = out.merge(p, on="code", how="left")
    out["priority_rank"] = out["priority_rank"].astype("Int64")
    return out


def high_priority_unsupported(status: pd.DataFrame, top: int = 5) -> pd.DataFrame:
    """Municipalities ranked 1…`top` by the support-priority score (ties share a rank, so a rank
    equal to `top` is included) with no support in the reference fiscal year."""
    s = status[status["priority_rank"].notna()]
    s = s[(s["priority_rank"] <= top) & ~s["supported_fy"]]
    return s.sort_values(["priority_rank", "code"])[["code", "name", "priority_rank", "priority_score",
                                                     "priority_reasons", "last_contact", "flags"]].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# key indicators of one municipality for its page (notebook 01's table; docs/support_record.md §3.6)

#: Columns of notebook 01's municipal indicator table kept on an insurer's page.
INSURER_INDICATOR_COLUMNS = ["muni_code", "muni_name", "fy", "indicator_id", "indicator_name", "unit", "numerator",
                             "denominator", "crude_rate", "crude_lower", "crude_upper", "adj_rate", "adj_lower",
                             "adj_upper", "expected", "sr", "sr_lower", "sr_upper", "ref_rate", "comparison",
                             "judgement", "polarity", "method", "conf"]


def insurer_indicators(indicator_table: pd.DataFrame, code: str, fy: int, reference_label: str,
                       indicator_ids=None) -> pd.DataFrame:
    """The key indicators (`hsutils.analysis.indicators.KEY_INDICATORS`, those of the support-priority score)
    of one municipality in `fy`, from notebook 01's table (`overview.municipal_indicator_table`:
    rates with intervals and the 標準化該当比 against the reference). No new figure is computed here.
    Unsuppressed: save it with the indicator table's count and derived columns. `reference_label`
    names the reference for the chart (`areas.reference_for_each_municipality`)."""
    from hsutils.analysis import indicators

    ids = list(indicator_ids or indicators.KEY_INDICATORS)
    t = indicator_table
    out = t[(t["muni_code"].astype(str).str.zfill(5) == str(code)) & (t["fy"] == int(fy)) & t["indicator_id"].isin(ids)]
    out = out.assign(order=out["indicator_id"].map({k: i for i, k in enumerate(ids)})).sort_values("order")
    out = out[[c for c in INSURER_INDICATOR_COLUMNS if c in out.columns]].reset_index(drop=True)
    out["reference_label"] = reference_label
    out["reference_kind"] = reference_label
    return out


_INDICATOR_VIEW = {"indicator_name": "指標", "numerator": "該当数", "denominator": "対象数", "crude_rate": "粗率",
                   "adj_rate": "年齢調整率", "adj_interval": "年齢調整率の区間", "ref_rate": "基準の率",
                   "sr": "標準化該当比", "sr_interval": "標準化該当比の区間", "judgement": "判定"}


def _interval(lo: pd.Series, hi: pd.Series, digits: int) -> pd.Series:
    a, b = pd.to_numeric(lo, errors="coerce"), pd.to_numeric(hi, errors="coerce")
    text = a.round(digits).astype(str) + "〜" + b.round(digits).astype(str)
    return text.where(a.notna() & b.notna(), "")


def insurer_indicator_view(shown: pd.DataFrame) -> pd.DataFrame:
    """The page's table of `insurer_indicators` after suppression: rates (%) and ratios with their
    intervals as 「下限〜上限」, Japanese headers; suppressed cells stay as their mark."""
    out = shown.copy()
    out["adj_interval"] = _interval(out["adj_lower"], out["adj_upper"], 1)
    out["sr_interval"] = _interval(out["sr_lower"], out["sr_upper"], 2)
    for col, digits in (("crude_rate", 1), ("adj_rate", 1), ("ref_rate", 1), ("sr", 2)):
        num = pd.to_numeric(out[col], errors="coerce")
        out[col] = num.round(digits).astype(object).where(num.notna(), out[col])
    return out[list(_INDICATOR_VIEW)].rename(columns=_INDICATOR_VIEW)

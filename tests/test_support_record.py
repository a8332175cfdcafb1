"""Notebook 09 保険者支援の記録 (hsutils.patterns.support_record; docs/support_record.md, docs/rules.md §5.5–§5.6).

Small hand-made records only; the expected values are worked out by hand in the comments."""
from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hsutils.patterns import nephropathy as nep
from hsutils.publish import privacy, report
from hsutils.patterns import support_record as sr
from hsutils.core.errors import ParameterError

D = dt.date
DATA = Path(__file__).parent / "data"


def base_record(**insurer) -> dict:
    """One municipality, one key person (A, not publishable), one publishable head (D), one 連合会 staff."""
    return {
        "insurer": {"code": "17201", "name": "金沢市", "type": "市町村", **insurer},
        "staff": [
            {"id": "A", "name": "山田花子", "role": "国保年金課 保健師", "since": D(2021, 4, 1), "key_person": True},
            {"id": "D", "name": "公開太郎", "role": "国保年金課長", "since": D(2020, 4, 1), "key_person": True,
             "publishable": True},
        ],
        "rengokai_staff": [{"id": "R1", "name": "連合一郎", "role": "連合会 保健師", "since": D(2019, 4, 1)},
                           {"id": "R2", "name": "連合二郎", "role": "連合会 事務", "since": D(2019, 4, 1)}],
        "visits": [
            {"date": D(2024, 5, 10), "type": "訪問", "rengokai": ["R1"], "responders": ["A", "D"],
             "topics": "抽出基準", "reaction": "山田花子さんは前向き",
             "actions": [{"what": "抽出基準を計画に書く", "due": D(2024, 9, 30), "owner": "保険者", "status": "対応中"}]},
        ],
        "checklist": {"needs": {"status": "済", "date": D(2024, 5, 10)}},
    }


def write(tmp_path, raw, name="17201_金沢市.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return p


def message(tmp_path, raw) -> str:
    with pytest.raises(sr.SupportRecordError) as e:
        sr.read_record(write(tmp_path, raw))
    return str(e.value)


# ------------------------------------------------------------------------------ validation (§1)

def test_valid_record_reads():
    r = sr.validate_record(base_record(), "x.yaml")
    assert (r.code, r.type, len(r.contacts), r.contacts[0].actions[0].status) == ("17201", "市町村", 1, "対応中")
    assert r.checklist["needs"]["status"] == "済"


def test_missing_visit_date_message(tmp_path):
    raw = base_record()
    del raw["visits"][0]["date"]
    assert message(tmp_path, raw) == (
        "支援記録 17201_金沢市.yaml: 訪問記録 1件目 の項目「date」の値「（空欄）」は使えません。"
        "YYYY-MM-DD の形式の日付（例: 2024-05-10）が必要です。")


def test_bad_date_message(tmp_path):
    raw = base_record()
    raw["visits"][0]["date"] = "2024-13-01"
    assert message(tmp_path, raw) == (
        "支援記録 17201_金沢市.yaml: 訪問記録 1件目 の項目「date」の値「2024-13-01」は使えません。"
        "YYYY-MM-DD の形式の日付（例: 2024-05-10）が必要です。")


def test_unknown_checklist_item_message(tmp_path):
    raw = base_record()
    raw["checklist"]["budget"] = {"status": "済"}
    assert message(tmp_path, raw) == (
        "支援記録 17201_金沢市.yaml: チェックリスト（checklist）の budget の項目「checklist」の値「budget」は使えません。"
        "「budget」という項目はありません。市町村の項目（needs, structure, pref_visit, plan, committee, record_kdb）"
        "のいずれかが必要です。")


def test_rengokai_scope_and_other_type_items_are_refused(tmp_path):
    raw = base_record()
    raw["checklist"]["office"] = "済"
    assert "「office」は連合会事務局全体の項目で、保険者ごとには記録しません（rengokai.yaml に記録します）" in message(tmp_path, raw)
    raw = base_record()
    raw["checklist"]["kouiki"] = "済"
    assert "「kouiki」は市町村の項目ではありません" in message(tmp_path, raw)


def test_duplicate_visit_message(tmp_path):
    raw = base_record()
    raw["visits"].append({"date": D(2024, 5, 10), "type": "訪問", "topics": "同じ日"})
    assert message(tmp_path, raw) == (
        "支援記録 17201_金沢市.yaml: 訪問記録 2件目（2024-05-10） の項目「date」の値「2024-05-10」は使えません。"
        "同じ日付・種別（訪問）の記録が 訪問記録 1件目（2024-05-10） にもあります。1回の支援は1件にまとめてください。")
    # the same day with another type is a second contact, not a duplicate
    raw["visits"][1]["type"] = "電話・メール"
    assert len(sr.read_record(write(tmp_path, raw)).contacts) == 2


def test_action_without_due_date_and_unknown_person(tmp_path):
    raw = base_record()
    del raw["visits"][0]["actions"][0]["due"]
    assert message(tmp_path, raw) == (
        "支援記録 17201_金沢市.yaml: 訪問記録 1件目（2024-05-10） の次の対応 1件目 の項目「due」の値「（空欄）」は使えません。"
        "YYYY-MM-DD の形式の日付（例: 2024-05-10）が必要です。")
    raw = base_record()
    raw["visits"][0]["responders"] = ["Z"]
    assert message(tmp_path, raw) == (
        "支援記録 17201_金沢市.yaml: 訪問記録 1件目（2024-05-10） の項目「responders」の値「Z」は使えません。"
        "保険者の担当者（staff）の id（A, D）のいずれかが必要です。")


def test_completed_action_needs_done_date_and_types_are_checked(tmp_path):
    raw = base_record()
    raw["visits"][0]["actions"][0]["status"] = "完了"
    assert "status が完了のときは完了日" in message(tmp_path, raw)
    raw = base_record(type="組合")
    assert message(tmp_path, raw) == (
        "支援記録 17201_金沢市.yaml: 保険者の基本情報（insurer） の項目「type」の値「組合」は使えません。"
        "市町村 / 広域連合 / 国保組合 のいずれかが必要です。")


def test_declaration2_answers_are_checked(tmp_path):
    raw = base_record()
    raw["declaration2"] = {2024: {"requirements": {"evaluation": {"met": "たぶん"}}}}
    assert message(tmp_path, raw) == (
        "支援記録 17201_金沢市.yaml: 宣言2（declaration2）の 2024年度 の evaluation の項目「met」の値「たぶん」は使えません。"
        "はい／いいえ（yes/no）が必要です。")


def test_two_files_for_one_insurer(tmp_path):
    write(tmp_path, base_record(), "a.yaml")
    write(tmp_path, base_record(), "b.yaml")
    write(tmp_path, {"broken": True}, "_template.yaml")  # skipped: starts with "_"
    with pytest.raises(sr.SupportRecordError, match="保険者ごとに1ファイルが必要です（a.yaml にも同じ保険者があります）"):
        sr.load_records(tmp_path)


# ------------------------------------------------------------------------------ the Excel form (§1.2)

def _xlsx(path: Path, visits_rows):
    sheets = {
        "基本情報": pd.DataFrame({"項目": ["code", "name", "type", "partners"], "値": ["17202", "七尾市", "市町村", "医師会、県"]}),
        "担当者": pd.DataFrame([["保険者", "A", "氏名甲", "保健師", "2021-04-01", None, "はい", None],
                             ["連合会", "R1", "氏名乙", "連合会 保健師", "2019-04-01", None, None, None]],
                            columns=sr.XLSX_SHEETS["担当者"]),
        "訪問記録": pd.DataFrame(visits_rows, columns=sr.XLSX_SHEETS["訪問記録"]),
        "次の対応": pd.DataFrame([[1, "計画に書く", "2024-09-30", "保険者", "未着手", None]], columns=sr.XLSX_SHEETS["次の対応"]),
        "チェックリスト": pd.DataFrame([["needs", "済", "2024-05-10", ""]], columns=sr.XLSX_SHEETS["チェックリスト"]),
        "宣言2": pd.DataFrame([[2024, "はい", "extraction_criteria", "はい", ""]], columns=sr.XLSX_SHEETS["宣言2"]),
    }
    report.write_xlsx(sheets, path)
    return path


def test_xlsx_form_reads_like_yaml_and_names_sheet_and_row(tmp_path):
    good = [[1, "2024-05-10", "訪問", "R1", "A", "抽出基準", "前向き", ""],
            [2, "2024-06-01", "電話・メール", "R1", "A", "日程", "", ""]]
    r = sr.read_record(_xlsx(tmp_path / "17202.xlsx", good))
    assert (r.code, r.partners, [c.date for c in r.contacts]) == ("17202", ["医師会", "県"], [D(2024, 5, 10), D(2024, 6, 1)])
    assert r.contacts[0].actions[0].due == D(2024, 9, 30) and r.staff["A"].key_person
    assert r.declaration2[2024]["requirements"]["extraction_criteria"]["met"] == "はい"
    bad = [good[0], [2, "2024/02/30", "訪問", "R1", "A", "x", "", ""]]
    with pytest.raises(sr.SupportRecordError) as e:
        sr.read_record(_xlsx(tmp_path / "bad.xlsx", bad))
    assert str(e.value) == ("支援記録 bad.xlsx: シート「訪問記録」3行目 の項目「date」の値「2024/02/30」は使えません。"
                            "YYYY-MM-DD の形式の日付（例: 2024-05-10）が必要です。")


# ------------------------------------------------------------------------------ status rules (§3)

def _record(**changes):
    raw = base_record()
    for k, v in changes.items():
        raw[k] = v
    return sr.validate_record(raw, "x.yaml")


def test_fiscal_year_boundary():
    assert sr.fiscal_year_of(D(2025, 3, 31)) == 2024 and sr.fiscal_year_of(D(2025, 4, 1)) == 2025


def test_overdue_action_boundary():
    r = _record()  # action due 2024-09-30, 対応中
    on_due = sr.open_actions([r], D(2024, 9, 30)).iloc[0]
    assert (bool(on_due["overdue"]), on_due["days_overdue"]) == (False, 0)  # due today: not overdue
    next_day = sr.open_actions([r], D(2024, 10, 1)).iloc[0]
    assert (bool(next_day["overdue"]), next_day["days_overdue"]) == (True, 1)
    assert sr.insurer_status([r], D(2024, 9, 30)).loc[0, "overdue_actions"] == 0
    assert sr.insurer_status([r], D(2024, 10, 1)).loc[0, "overdue_actions"] == 1
    # completed actions are never open; contacts after the reference date are not counted
    assert sr.open_actions([r], D(2024, 5, 9)).empty


def test_contact_interval_boundary():
    r = _record()  # last contact 2024-05-10; 2025-05-10 is 365 days later
    assert (D(2025, 5, 10) - D(2024, 5, 10)).days == 365
    at = sr.insurer_status([r], D(2025, 5, 10), contact_interval_days=365).iloc[0]
    assert at["days_since_contact"] == 365 and "支援間隔超過" not in at["flags"]
    after = sr.insurer_status([r], D(2025, 5, 11), contact_interval_days=365).iloc[0]
    assert "支援間隔超過" in after["flags"]


def test_staff_turnover_boundary():
    raw = base_record()
    raw["staff"][0]["until"] = D(2024, 5, 9)
    raw["staff"].append({"id": "C", "name": "後任", "role": "国保年金課 保健師", "since": D(2024, 5, 10), "key_person": True})
    met_on_first_day = sr.insurer_status([sr.validate_record(raw, "x")], D(2024, 6, 1)).iloc[0]
    assert "担当交代後に未対応" not in met_on_first_day["flags"]  # since == last contact: met that day
    raw["staff"][2]["since"] = D(2024, 5, 11)
    later = sr.insurer_status([sr.validate_record(raw, "x")], D(2024, 6, 1)).iloc[0]
    assert "保険者の担当交代後に未対応" in later["flags"]


def test_rengokai_handover_and_single_staff():
    raw = base_record()
    raw["rengokai_staff"] = [{"id": "R1", "name": "前任", "role": "連合会 保健師", "since": D(2019, 4, 1), "until": D(2024, 5, 31)},
                             {"id": "R3", "name": "後任", "role": "連合会 保健師", "since": D(2024, 6, 1)}]
    s = sr.insurer_status([sr.validate_record(raw, "x")], D(2024, 7, 1)).iloc[0]
    assert s["rengokai_current"] == 1 and "連合会の引継ぎ後に未対応" in s["flags"]
    s = sr.insurer_status([sr.validate_record(raw, "x")], D(2024, 5, 31)).iloc[0]  # R1 still in post that day
    assert "連合会の引継ぎ後に未対応" not in s["flags"] and "連合会の担当が1人" in s["flags"]


def test_coverage_from_hand_made_records():
    # 金沢市: one 訪問 2024-05-10 (FY2024); 七尾市: a 委員会 contact 2023-06-01 (FY2023);
    # 小松市 in the master without a file; 広域連合 with no contact.
    a = _record()
    b = copy.deepcopy(base_record(code="17202", name="七尾市"))
    b["visits"] = [{"date": D(2023, 6, 1), "type": "支援・評価委員会", "committee_advice": "評価を"}]
    c = base_record(code="K17", name="広域連合", type="広域連合")
    c["visits"], c["checklist"] = [], {}
    records = [a, sr.validate_record(b, "b"), sr.validate_record(c, "c")]
    master = pd.DataFrame({"muni_code": ["17201", "17202", "17203"], "name": ["金沢市", "七尾市", "小松市"]})
    status = sr.insurer_status(records, D(2025, 3, 31), master=master)
    assert status["code"].tolist() == ["17201", "17202", "17203", "K17"]
    cov = sr.coverage_table(status).set_index("type")
    # 市町村: 3 insurers; this FY 1 (金沢), ever 2 (金沢, 七尾), committee 1 (七尾) → 33.3 %, 66.7 %, 33.3 %
    assert cov.loc["市町村", ["insurers", "supported_fy", "supported_ever", "committee_ever"]].tolist() == [3, 1, 2, 1]
    assert cov.loc["市町村", ["supported_fy_pct", "supported_ever_pct", "committee_ever_pct"]].tolist() == [33.3, 66.7, 33.3]
    assert cov.loc["広域連合", ["insurers", "supported_ever"]].tolist() == [1, 0]
    assert status.set_index("code").loc["17203", "flags"] == "支援記録なし"


def test_checklist_completion_counts():
    a = _record(checklist={"needs": "済", "pref_visit": "対象外"})
    b = sr.validate_record({**base_record(code="17202", name="七尾市"), "checklist": {"needs": "実施中"}}, "b")
    c = sr.validate_record({**base_record(code="K17", name="広域連合", type="広域連合"), "checklist": {"kouiki": "済"},
                            "visits": []}, "c")
    done = sr.checklist_completion([a, b, c]).set_index("item")
    # needs: 3 insurers apply, 済 1, 実施中 1, 未記入 1 → 33.3 %; pref_visit: 市町村 only, 金沢 対象外 → 1 applicable
    assert done.loc["needs", ["applicable", "done", "in_progress", "not_started"]].tolist() == [3, 1, 1, 1]
    assert done.loc["needs", "done_pct"] == 33.3
    assert done.loc["pref_visit", ["applicable", "done"]].tolist() == [1, 0]
    assert done.loc["kouiki", ["applicable", "done", "done_pct"]].tolist() == [1, 1, 100.0]
    assert "office" not in done.index  # 連合会 scope


# ------------------------------------------------------------------------------ 宣言2 over years (§5.6)

ALL = {k: {"met": "はい"} for k in sr.DECLARATION2_REQUIREMENTS}


def _d2(code, answers):
    raw = base_record(code=code, name=f"市{code}")
    raw["declaration2"] = answers
    return sr.validate_record(raw, code)


def test_declaration2_by_year_and_changes():
    no5 = {**ALL, "prefecture_council": {"met": "いいえ"}}
    records = [
        _d2("17201", {2022: {"requirements": no5}, 2023: {"requirements": ALL}, 2024: {"requirements": ALL}}),
        # 17202: ⑤ not met but not a 腎症 program in 2023 → all met; 2024 ④ lost
        _d2("17202", {2023: {"nephropathy_program": False, "requirements": no5},
                      2024: {"requirements": {**ALL, "evaluation": {"met": "いいえ"}}}}),
        _d2("17203", {2024: {"requirements": {"extraction_criteria": {"met": "はい"}}}}),  # others 未記入
    ]
    t = sr.declaration2_by_year(records, [2022, 2023, 2024], denominator=4).set_index(["mark", "fy"])
    # ①: 2022 {01} 1; 2023 {01, 02} 2; 2024 {01, 02, 03} 3   (denominator 4 municipalities: 25 %, 50 %, 75 %)
    assert [t.loc[("①", y), "met"] for y in (2022, 2023, 2024)] == [1, 2, 3]
    assert [t.loc[("①", y), "met_pct"] for y in (2022, 2023, 2024)] == [25.0, 50.0, 75.0]
    # ④: 2024 only 01 (02 lost it); ⑤: 2023 {01}, 2024 {01, 02}
    assert [t.loc[("④", y), "met"] for y in (2022, 2023, 2024)] == [1, 2, 1]
    assert [t.loc[("⑤", y), "met"] for y in (2022, 2023, 2024)] == [0, 1, 2]
    # 全要件達成: 2022 none (01 lacks ⑤ in a 腎症 program); 2023 01 and 02; 2024 01 only
    assert [t.loc[(sr.ALL_REQUIREMENTS_LABEL, y), "met"] for y in (2022, 2023, 2024)] == [0, 2, 1]
    assert [t.loc[("①", y), "reported"] for y in (2022, 2023, 2024)] == [1, 2, 3]
    changes = sr.declaration2_changes(records, [2022, 2023, 2024])
    assert changes[["code", "fy", "change"]].values.tolist() == [
        ["17201", 2023, "新たに達成"], ["17202", 2023, "新たに達成"], ["17202", 2024, "未達成に戻った"]]
    wide = sr.declaration2_wide(sr.declaration2_by_year(records, [2022, 2023, 2024], denominator=4))
    assert wide.loc[wide["要件"] == "①", ["2022年度", "2023年度", "2024年度"]].values.tolist() == [
        ["1（25.0%）", "2（50.0%）", "3（75.0%）"]]


def test_notebook_04_checklist_output_is_unchanged(tmp_path):
    """Notebook 04 reads and judges 宣言2 through this module; its table is byte-identical to the
    output of the previous implementation (tests/data/nephropathy_checklist_04_expected.csv)."""
    assert nep.load_checklist is sr.load_declaration2_selfcheck
    assert nep.checklist_table is sr.declaration2_table and nep.checklist_verdict is sr.declaration2_verdict
    check = nep.checklist_table(nep.load_checklist())
    written = report.save_table(check.drop(columns=["key"]), tmp_path, "checklist")
    assert written.read_bytes() == (DATA / "nephropathy_checklist_04_expected.csv").read_bytes()
    assert nep.checklist_verdict(check) == "判定: 宣言2の必須要件（①〜④）を満たしていません。不足している要件: ④（満たしていない）。"


# ------------------------------------------------------------------------------ privacy (§5)

def test_names_never_shown_unless_publishable():
    r = _record()
    status = sr.insurer_status([r], D(2024, 6, 1))
    page = sr.insurer_page(r, status.iloc[0], D(2024, 6, 1), [2024])
    history = sr.history_table([r], D(2024, 6, 1))
    shown = page + history.to_csv() + sr.open_actions([r], D(2024, 6, 1)).to_csv() + status.to_csv()
    for secret in ("山田花子", "連合一郎"):
        assert secret not in shown
    assert "公開太郎（国保年金課長）" in page  # marked publishable
    assert history.loc[0, "reaction"] == "［国保年金課 保健師］さんは前向き"
    assert history.loc[0, "responders"] == "国保年金課 保健師、公開太郎（国保年金課長）"


def test_demo_records_show_no_names():
    records = sr.load_records(sr.demo_folder())
    assert len(records) == 18  # 17 municipalities with a file + the 広域連合
    history = sr.history_table(records, sr.DEMO_AS_OF).to_csv()
    names = {p.name for r in records for p in [*r.staff.values(), *r.rengokai_staff.values()] if not p.publishable}
    assert names and not any(n in history for n in names)


# ------------------------------------------------------------------------------ pages and the form

def test_page_of_an_insurer_without_visits():
    r = _record(visits=[], checklist={})
    page = sr.insurer_page(r, sr.insurer_status([r], D(2025, 3, 31)).iloc[0], D(2025, 3, 31), [2024])
    assert "支援の記録はまだありません。" in page and "注意: 支援記録なし" in page
    assert "宣言2の点検の記録はありません。" in page


def test_add_visit_writes_a_valid_file_and_keeps_the_previous(tmp_path):
    path = write(tmp_path, base_record())
    before = path.read_bytes()
    kept = sr.add_visit(path, {"date": D(2024, 7, 1), "type": "電話・メール", "rengokai": ["R2"], "responders": ["A"],
                               "topics": "日程", "actions": [{"what": "資料送付", "due": D(2024, 7, 15), "owner": "連合会"}]},
                        {"structure": {"status": "実施中"}}, now=dt.datetime(2024, 7, 1, 9, 30))
    assert kept == tmp_path / "previous" / "17201_金沢市.20240701-093000.yaml" and kept.read_bytes() == before
    r = sr.read_record(path)
    assert [c.date for c in r.contacts] == [D(2024, 5, 10), D(2024, 7, 1)]
    assert r.checklist["structure"]["status"] == "実施中" and r.checklist["needs"]["status"] == "済"
    # an invalid visit changes nothing
    now = path.read_bytes()
    with pytest.raises(sr.SupportRecordError, match="訪問記録 3件目"):
        sr.add_visit(path, {"date": "2024-02-30", "type": "訪問"})
    assert path.read_bytes() == now and len(list((tmp_path / "previous").iterdir())) == 1
    assert [r.code for r in sr.load_records(tmp_path)] == ["17201"]  # previous/ is not read


def test_resolve_as_of():
    assert sr.resolve_as_of(None, None) == sr.DEMO_AS_OF
    assert sr.resolve_as_of("2024-06-30", "x") == D(2024, 6, 30)
    assert sr.resolve_as_of(None, "folder", today=D(2026, 1, 5)) == D(2026, 1, 5)
    with pytest.raises(ParameterError, match="パラメータ as_of の値「6/30」は使えません"):
        sr.resolve_as_of("6/30", None)


def test_blank_templates_are_valid_records():
    templates = Path(__file__).resolve().parents[1] / "data_templates"
    yaml_form = sr.read_record(templates / "support_record_template.yaml")
    xlsx_form = sr.read_record(templates / "support_record_template.xlsx")
    for r in (yaml_form, xlsx_form):
        assert r.type == "市町村" and set(r.checklist) == {i.id for i in sr.insurer_items("市町村")}
        assert r.contacts[0].actions[0].due == D(2024, 7, 31)


def test_batch_resume_key_follows_the_support_folder(tmp_path):
    """A changed record must re-run notebook 09 (the batch hashes a folder named by a parameter)."""
    from hsutils.running import batch

    write(tmp_path, base_record())
    found = batch._referenced_files({"support_dir": str(tmp_path), "out_dir": str(tmp_path)})
    assert found == [tmp_path]
    before = batch._files_fingerprint(found)
    raw = base_record()
    raw["visits"][0]["topics"] = "変更"
    write(tmp_path, raw)
    assert batch._files_fingerprint(found) != before


def test_input_form_saves_a_visit(tmp_path):
    path = write(tmp_path, base_record())
    form = sr.visit_form(path)
    fields = {getattr(w, "description", ""): w for w in _form_widgets(form)}
    fields["日付"].value = D(2024, 8, 1)
    fields["種別"].value = "来所"
    fields["保険者の対応者"].value = ("A",)
    fields["協議内容"].value = "評価計画"
    fields["次の対応"].value = "評価指標を決める"
    fields["期限"].value = D(2024, 9, 1)
    fields["保険者の実施体制の把握"].value = "済"
    fields["保存"].click()
    r = sr.read_record(path)
    assert [c.type for c in r.contacts] == ["訪問", "来所"]
    assert r.contacts[1].actions[0].due == D(2024, 9, 1) and r.checklist["structure"]["status"] == "済"
    assert len(list((tmp_path / "previous").iterdir())) == 1
    result = form.children[-1].value
    assert "保存しました" in result and "17201_金沢市.yaml" in result and "previous/17201_金沢市." in result
    assert "&id" not in path.read_text(encoding="utf-8")  # visit date = checklist date: no YAML anchor for staff to puzzle over
    # the text fields are emptied for the next visit; saving the same date and type again is refused, in Japanese
    assert fields["協議内容"].value == "" and fields["保険者の実施体制の把握"].value == "（変更なし）"
    fields["保存"].click()
    assert "保存できませんでした" in form.children[-1].value and "同じ日付・種別（来所）の記録が" in form.children[-1].value
    assert len(sr.read_record(path).contacts) == 2


def _form_widgets(box):
    """Every widget of a form, the rows (HBox/VBox) opened."""
    for c in box.children:
        yield from (_form_widgets(c) if hasattr(c, "children") else [c])


def _em(css: str) -> float:
    """The width of a layout written as "Nem" or "calc(Nem + Mem)", in em."""
    import re

    return sum(float(x) for x in re.findall(r"([\d.]+)em", css))


def test_form_labels_and_choices_read_in_full(tmp_path):
    # the browser check (1400 px) saw 「（変更な」 and 「保険者全体の課題を踏まえた個別…」: the label column holds the
    # longest title (19 full-width characters + margin) and the dropdown part holds 「（変更なし）」 (6) + the arrow
    form = sr.visit_form(write(tmp_path, base_record()))
    checks = [w for w in _form_widgets(form) if getattr(w, "options", None) and "（変更なし）" in w.options]
    assert len(checks) == len(sr.insurer_items("市町村")) and checks
    longest = max(len(w.description) for w in checks)
    assert longest == len("保険者全体の課題を踏まえた個別支援計画") == 19
    for w in checks:
        label = _em(w.style.description_width)
        assert label >= longest + 1.5 and _em(w.layout.width) - label >= 6 + 3
        assert _em(w.layout.width) * 16 <= 1400 - 300  # fits beside JupyterLab's side bar at 16 px/em
    for name in ("種別", "担当"):  # 「支援・評価委員会」 (8) in full
        w = next(w for w in _form_widgets(form) if getattr(w, "description", "") == name)
        assert _em(w.layout.width) - _em(w.style.description_width) >= 8 + 3
    rengokai = [w for w in _form_widgets(sr.rengokai_form(tmp_path)) if getattr(w, "options", None)]
    assert rengokai and all(_em(w.style.description_width) >= len(w.description) + 1.5 for w in rengokai)


def test_date_pickers_carry_the_format_hint(tmp_path):
    # the DatePicker's order (mm/dd/yyyy) comes from the browser's language: a hint stands beside each one
    import ipywidgets as widgets

    for form in (sr.visit_form(write(tmp_path, base_record())), sr.rengokai_form(tmp_path)):
        rows = [c for c in _form_widgets_rows(form) if any(isinstance(x, widgets.DatePicker) for x in c.children)]
        assert rows and all(sr.DATE_HINT in r.children[1].value for r in rows)
        assert "mm/dd/yyyy" in sr.DATE_HINT and "月/日/年" in sr.DATE_HINT


def _form_widgets_rows(box):
    return [c for c in box.children if hasattr(c, "children")]


def test_high_priority_without_support_this_year():
    # 金沢 supported in FY2024 (2024-05-10); 七尾 and 小松 not; 広域連合 has no priority
    a = _record()
    b = sr.validate_record({**base_record(code="17202", name="七尾市"), "visits": []}, "b")
    c = sr.validate_record({**base_record(code="17203", name="小松市"), "visits": []}, "c")
    k = sr.validate_record({**base_record(code="K17", name="広域連合", type="広域連合"), "visits": [], "checklist": {}}, "k")
    priority = pd.DataFrame({"muni_code": ["17201", "17202", "17203"], "rank": [1, 2, 3], "score": [3.0, 2.0, 1.0],
                             "reasons": ["r1", "r2", "r3"]})
    status = sr.with_priority(sr.insurer_status([a, b, c, k], D(2025, 3, 31)), priority)
    assert status.set_index("code")["priority_rank"].isna().to_dict()["K17"]
    # top 2: 金沢 (rank 1) is supported this year → only 七尾 (rank 2 == top is included)
    assert sr.high_priority_unsupported(status, top=2)["code"].tolist() == ["17202"]
    assert sr.high_priority_unsupported(status, top=3)["code"].tolist() == ["17202", "17203"]
    page = sr.insurer_page(b, status.set_index("code").loc["17202"], D(2025, 3, 31), [2024])
    assert "支援優先度（ノートブック 01 と同じ得点）: 県内 2 位（得点 2.00）。r2" in page


# ------------------------------------------------------------------ comments survive the form (§6)

def test_add_visit_keeps_comments_order_and_indentation(tmp_path):
    template = Path(__file__).resolve().parents[1] / "data_templates" / "support_record_template.yaml"
    path = tmp_path / "17201_金沢市.yaml"
    path.write_bytes(template.read_bytes())
    before = path.read_text(encoding="utf-8")
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    sr.add_visit(path, {"date": D(2024, 8, 1), "type": "来所", "responders": ["A"], "topics": "評価計画\n2行目"},
                 {"structure": {"status": "済"}}, now=dt.datetime(2024, 8, 1, 10, 0))
    after = path.read_text(encoding="utf-8")
    # every whole-line comment and every end-of-line comment of the hand-written file is still there
    assert [line for line in after.splitlines() if line.lstrip().startswith("#")] == comments
    assert "# 市町村は団体コード5桁" in after and "# 着任日（担当交代の判定に使います）" in after
    # the original text is unchanged up to the appended visit; the list keeps the file's indentation
    assert after.index("insurer:") < after.index("staff:") < after.index("visits:")
    assert "  - id: A" in after and "  - date: 2024-08-01" in after
    assert "topics: |-\n      評価計画\n      2行目" in after  # multi-line text as a block
    r = sr.read_record(path)
    assert [c.date for c in r.contacts] == [D(2024, 5, 10), D(2024, 8, 1)] and r.contacts[1].topics == "評価計画\n2行目"
    assert r.checklist["structure"]["status"] == "済"
    assert (tmp_path / "previous" / "17201_金沢市.20240801-100000.yaml").read_text(encoding="utf-8") == before


# ------------------------------------------------------------------ the 連合会-wide record (§1.3)

def test_rengokai_record_validation_messages(tmp_path):
    def msg(raw):
        (tmp_path / sr.RENGOKAI_FILE).write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        with pytest.raises(sr.SupportRecordError) as e:
            sr.read_rengokai_record(tmp_path)
        return str(e.value)

    assert msg({"checklist": {"needs": "済"}}) == (
        "支援記録 rengokai.yaml: チェックリスト（checklist）の needs の項目「checklist」の値「needs」は使えません。"
        "「needs」は保険者ごとの項目で、各保険者の支援カルテに記録します。連合会の項目（office, tools, training）のいずれかが必要です。")
    assert msg({"checklist": {"office": {"status": "done"}}}) == (
        "支援記録 rengokai.yaml: チェックリスト（checklist）の office の項目「status」の値「done」は使えません。"
        "未着手 / 実施中 / 済 / 対象外 のいずれかが必要です。")
    assert "「visits」" in msg({"visits": []})
    assert "「2024-02-30」" in msg({"checklist": {"tools": {"status": "済", "date": "2024-02-30"}}})


def test_rengokai_items_missing_file_and_table():
    assert [i.id for i in sr.rengokai_items()] == ["office", "tools", "training"]
    t = sr.rengokai_checklist_table(None)
    assert list(t["status"]) == ["未記入"] * 3
    assert sr.rengokai_summary(t).startswith("連合会全体の項目 3: 済 0。まだ済でない項目: 準備編№24〜25 連合会事務局の体制（未記入）")


def test_set_rengokai_checklist_creates_then_updates_keeping_comments(tmp_path):
    path = tmp_path / sr.RENGOKAI_FILE
    assert sr.read_rengokai_record(tmp_path) is None
    assert sr.set_rengokai_checklist(path, {"office": {"status": "実施中", "date": D(2024, 4, 1)}}) is None  # new file
    assert sr.read_rengokai_record(tmp_path).checklist["office"]["status"] == "実施中"
    template = Path(__file__).resolve().parents[1] / "data_templates" / "support_rengokai_template.yaml"
    path.write_bytes(template.read_bytes())
    kept = sr.set_rengokai_checklist(path, {"tools": {"status": "済", "date": D(2024, 6, 1), "note": "様式集"}},
                                     now=dt.datetime(2024, 6, 1, 8, 0))
    assert kept.read_bytes() == template.read_bytes()
    text = path.read_text(encoding="utf-8")
    for comment in ("# 連合会全体のチェックリストの様式", "# 準備編 №24〜25 連合会事務局の体制",
                    "# 事業実施編 №1〜5 連合会等のツールの収集", "# 事業実施編 №23〜26 研修会の企画"):
        assert comment in text
    t = sr.rengokai_checklist_table(sr.read_rengokai_record(tmp_path))
    assert list(t["status"]) == ["未着手", "済", "未着手"] and t.loc[1, "note"] == "様式集"
    # refused: nothing written
    with pytest.raises(sr.SupportRecordError, match="「plan」は保険者ごとの項目"):
        sr.set_rengokai_checklist(path, {"plan": {"status": "済"}})
    assert path.read_text(encoding="utf-8") == text
    # the insurer folder reader does not take rengokai.yaml for an insurer
    assert sr.load_records(tmp_path) == []


def test_rengokai_form_saves(tmp_path):
    form = sr.rengokai_form(tmp_path)
    rows = [c for c in form.children if c.__class__.__name__ == "HBox"]
    status, note = rows[2].children[0], rows[2].children[1]
    button = [c for c in form.children if getattr(c, "description", "") == "保存"][0]
    result = form.children[-1]
    button.click()
    assert "変える項目を選んでください" in result.value and not (tmp_path / sr.RENGOKAI_FILE).exists()
    status.value, note.value = "済", "年2回"
    button.click()
    assert "保存しました" in result.value and "rengokai.yaml" in result.value
    assert sr.read_rengokai_record(tmp_path).checklist["training"] == {"status": "済", "date": dt.date.today(), "note": "年2回"}


def test_demo_folder_has_a_valid_rengokai_record():
    r = sr.read_rengokai_record(sr.demo_folder())
    assert r is not None and set(r.checklist) == {"office", "tools"}


# ------------------------------------------------------------------ key indicators of one municipality (§3.6)

def _indicator_table() -> pd.DataFrame:
    rows = []
    for code in ("17201", "17202"):
        for fy in (2023, 2024):
            for k, ind in enumerate(["metabo", "kenshin_rate", "not_key"]):
                rows.append({"muni_code": code, "muni_name": "x", "medical_area": "m", "fy": fy, "indicator_id": ind,
                             "indicator_name": ind, "unit": "%", "numerator": 5 if ind == "metabo" else 120,
                             "denominator": 400, "crude_rate": 30.04, "crude_lower": 25.5, "crude_upper": 34.9,
                             "adj_rate": 29.96, "adj_lower": 25.44, "adj_upper": 34.95, "expected": 100.0,
                             "sr": 1.2049, "sr_lower": 0.994, "sr_upper": 1.4412, "ref_rate": 25.0,
                             "comparison": "有意差なし", "judgement": "差なし", "polarity": "lower_better",
                             "suppressed": False, "method": "adj", "conf": 0.95})
    return pd.DataFrame(rows)


def test_insurer_indicators_selects_one_municipality_in_key_order():
    t = sr.insurer_indicators(_indicator_table(), "17202", 2024, "県全体")
    # KEY_INDICATORS order: kenshin_rate before metabo; not_key dropped; only 17202 in FY2024
    assert list(t["indicator_id"]) == ["kenshin_rate", "metabo"]
    assert set(t["muni_code"]) == {"17202"} and set(t["fy"]) == {2024}
    assert set(t["reference_label"]) == {"県全体"} and "sr_lower" in t.columns
    assert sr.insurer_indicators(_indicator_table(), "17209", 2024, "県全体").empty


def test_insurer_indicator_view_shows_intervals_and_keeps_marks():
    t = sr.insurer_indicators(_indicator_table(), "17201", 2024, "県全体")
    hidden_cols = ["numerator", "adj_rate", "adj_lower", "adj_upper", "sr", "sr_lower", "sr_upper"]
    t[hidden_cols] = t[hidden_cols].astype(object)
    t.loc[t["indicator_id"] == "metabo", hidden_cols] = privacy.SUPPRESSION_MARK  # as the suppression plan leaves it
    v = sr.insurer_indicator_view(t)
    row = v.iloc[0]  # kenshin_rate
    assert (row["年齢調整率"], row["年齢調整率の区間"], row["標準化該当比"], row["標準化該当比の区間"]) == (30.0, "25.4〜35.0", 1.2, "0.99〜1.44")
    hidden = v.iloc[1]  # metabo, suppressed: the mark stays, no interval is made up
    assert (hidden["該当数"], hidden["年齢調整率"], hidden["年齢調整率の区間"], hidden["標準化該当比"]) == (privacy.SUPPRESSION_MARK, privacy.SUPPRESSION_MARK, "", privacy.SUPPRESSION_MARK)

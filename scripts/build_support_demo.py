"""Write the example 支援カルテ of the demo prefecture (石川県, fictitious content) into
parameters/support_records_demo/: one YAML per municipality and one for the 広域連合; and the blank Excel
form data_templates/support_record_template.xlsx.

    .venv/bin/python scripts/build_support_demo.py

Deterministic (no randomness): the pattern of each insurer is chosen from its position, so that the
example shows every status of docs/support_record.md §3 as of the demo date 2025-03-31 (no record
at all, support interval exceeded, overdue actions, an action due on the reference date, staff turnover
on both sides, 宣言2 gained and lost over 2022–2024). All names are invented.
"""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hsutils.patterns import support_record as sr  # noqa: E402

OUT = REPO / "parameters" / sr.DEMO_FOLDER_NAME
D = dt.date
SURNAMES = ["青木", "石田", "上野", "江口", "大西", "加藤", "木村", "久保", "小西", "佐野", "島田", "杉本",
            "高木", "千葉", "辻", "中川", "西田", "野口", "橋本", "平野"]
GIVEN = ["明美", "健一", "由紀", "誠", "直子", "浩二", "恵", "拓也", "真理", "修"]
# insurers without any record file: shown as 支援記録なし (their municipalities come from the master)
NO_FILE = {"17324", "17463"}
YES, NO = "はい", "いいえ"


def person(i: int, k: int) -> str:
    return SURNAMES[(i * 3 + k) % len(SURNAMES)] + GIVEN[(i + k * 7) % len(GIVEN)]


def declaration(i: int) -> dict:
    """宣言2 answers 2022–2024: more requirements met each year; a few insurers lose ④ in 2024."""
    out = {}
    for y, fy in enumerate((2022, 2023, 2024)):
        level = min(5, i % 4 + y * (1 + i % 2))  # 0..5 requirements met in order ①..⑤
        if i % 7 == 3 and fy == 2024:
            level = 3  # evaluation (④) dropped: 未達成に戻った
        reqs = {}
        for k, key in enumerate(sr.DECLARATION2_REQUIREMENTS):
            reqs[key] = {"met": YES if k < level else NO,
                         "note": "実施計画に明記" if k < level else "来年度に検討"}
        if i % 5 == 4 and fy == 2022:
            continue  # not reported that year
        out[fy] = {"nephropathy_program": i % 9 != 8, "requirements": reqs}
    return out


def municipal_record(i: int, code: str, name: str) -> dict:
    turnover = i % 4 == 1  # the key person changed on 2024-04-01, after the last contact
    staff = [
        {"id": "A", "name": person(i, 0), "role": "国保年金課 保健師（係長）", "since": D(2021, 4, 1),
         **({"until": D(2024, 3, 31)} if turnover else {}), "key_person": True, "publishable": False},
        {"id": "B", "name": person(i, 1), "role": "健康推進課 管理栄養士", "since": D(2022, 4, 1),
         "key_person": False, "publishable": False},
    ]
    if turnover:
        staff.append({"id": "C", "name": person(i, 2), "role": "国保年金課 保健師（係長）", "since": D(2024, 4, 1),
                      "key_person": True, "publishable": False})
    if i == 0:
        staff.append({"id": "D", "name": "架空太郎", "role": "国保年金課長", "since": D(2020, 4, 1),
                      "key_person": True, "publishable": True})
    handover = i % 5 == 2  # the 連合会's 担当 changed on 2024-04-01
    rengokai = [{"id": "R1", "name": person(i + 11, 3), "role": "連合会 保健事業課 保健師", "since": D(2019, 4, 1),
                 **({"until": D(2024, 3, 31)} if handover else {}), "publishable": False}]
    if handover:
        rengokai.append({"id": "R3", "name": person(i + 12, 4), "role": "連合会 保健事業課 保健師", "since": D(2024, 4, 1),
                         "publishable": False})
    if i % 3 == 0:
        rengokai.append({"id": "R2", "name": person(i + 13, 5), "role": "連合会 保健事業課 事務", "since": D(2020, 4, 1),
                         "publishable": False})
    first = rengokai[0]["id"]
    visits = []
    n_visits = (i % 4) + 1 if i % 6 != 5 else 0
    dates = [D(2022, 7, 12), D(2023, 6, 20), D(2024, 1, 25), D(2024, 2, 14)][:n_visits]
    if i % 2 == 0 and n_visits:
        dates[-1] = D(2024, 10, 8)  # supported this fiscal year
    for k in range(n_visits):
        date = dates[k] + dt.timedelta(days=i)
        v = {"date": date, "type": "支援・評価委員会" if k == 1 else ("電話・メール" if k == 3 and i % 3 else "訪問"),
             "rengokai": [first] + (["R2"] if i % 3 == 0 and k == 0 else []),
             "responders": ["A"] + (["B"] if k % 2 == 0 else []),
             "topics": ["データヘルス計画の中間評価と重点課題の整理", "糖尿病性腎症重症化予防の対象者抽出基準",
                        "受診勧奨後の受診確認の方法", "保健指導の評価指標"][k],
             "reaction": f"{person(i, 0)}係長は抽出基準の見直しに前向き" if k == 0 else "評価の方法に不安があるとのこと",
             "committee_advice": "経年の受診率とHbA1cの変化で評価すること" if k == 1 else ""}
        actions = []
        if k == n_visits - 1:
            due = [D(2025, 3, 31), D(2025, 2, 28), D(2025, 6, 30), D(2024, 12, 27)][i % 4]
            actions.append({"what": "抽出基準を実施計画に記載し、医師会と共有する", "due": due, "owner": "保険者",
                            "status": "対応中" if i % 4 != 2 else "未着手"})
        else:
            actions.append({"what": "KDB の帳票を使った対象者の概数把握", "due": date + dt.timedelta(days=60),
                            "owner": "連合会", "status": "完了", "done": date + dt.timedelta(days=45)})
        v["actions"] = actions
        visits.append(v)
    states = ["済", "実施中", "未着手"]
    checklist = {}
    for k, item in enumerate(sr.insurer_items("市町村")):
        if (i + k) % 5 == 4:
            continue  # not recorded yet
        checklist[item.id] = {"status": states[(i + 2 * k) % 3],
                              "date": D(2024, 6, 1) if states[(i + 2 * k) % 3] == "済" else None, "note": ""}
        checklist[item.id] = {k2: v for k2, v in checklist[item.id].items() if v not in (None, "")}
    if i % 8 == 7:
        checklist["pref_visit"] = {"status": "対象外", "note": "県の保健福祉センターが単独で訪問"}
    return {
        "insurer": {"code": code, "name": name, "type": "市町村",
                    "structure": "国保年金課（保健師2名）と健康推進課（管理栄養士1名）が連携",
                    "partners": ["市医師会", "県保健福祉センター"] if i % 2 else ["郡市医師会"]},
        "staff": staff, "rengokai_staff": rengokai,
        "hearing": {"features": "高齢化率が高く、糖尿病の未治療者が多い" if i % 2 else "人口規模が大きく地区差がある",
                    "needs": "対象者の抽出と評価の方法を知りたい",
                    "organisation": "国保部門と衛生部門の定例会議は年2回",
                    "partners": "かかりつけ医との連絡票を運用", "kdb": "KDB の帳票は担当保健師のみが操作"},
        "visits": visits, "checklist": checklist, "declaration2": declaration(i),
    }


def kouiki_record() -> dict:
    return {
        "insurer": {"code": "KOUIKI17", "name": "石川県後期高齢者医療広域連合（架空の記入例）", "type": "広域連合",
                    "structure": "保健事業係（保健師1名・事務2名）。一体的実施は全市町に委託",
                    "partners": ["県医師会", "県歯科医師会"]},
        "staff": [{"id": "A", "name": "架空花子", "role": "保健事業係 保健師", "since": D(2023, 4, 1), "key_person": True}],
        "rengokai_staff": [{"id": "R1", "name": "架空次郎", "role": "連合会 保健事業課 保健師", "since": D(2019, 4, 1)},
                           {"id": "R2", "name": "架空三郎", "role": "連合会 保健事業課 事務", "since": D(2022, 4, 1)}],
        "hearing": {"features": "被保険者の半数が85歳以上の町がある",
                    "organisation": "専門職が1名で、市町への助言が追いつかない",
                    "municipalities": "一体的実施を19市町中17市町が実施",
                    "rengokai": "KDB の一体的実施の帳票を連合会と共同で研修",
                    "partners": "県医師会と健康状態不明者の対応を協議"},
        "visits": [
            {"date": D(2023, 8, 3), "type": "訪問", "rengokai": ["R1", "R2"], "responders": ["A"],
             "topics": "一体的実施の市町の取組状況の共有", "reaction": "未実施の2町への支援を希望",
             "actions": [{"what": "未実施の町への合同訪問の日程調整", "due": D(2023, 10, 31), "owner": "連合会",
                          "status": "完了", "done": D(2023, 10, 2)}]},
            {"date": D(2024, 11, 20), "type": "支援・評価委員会", "rengokai": ["R1"], "responders": ["A"],
             "topics": "健康状態不明者の把握方法", "committee_advice": "質問票の回収率も指標にすること",
             "actions": [{"what": "健康状態不明者の市町別一覧を作る", "due": D(2025, 3, 14), "owner": "保険者",
                          "status": "対応中"}]},
        ],
        "checklist": {"needs": {"status": "済", "date": D(2023, 8, 3)}, "structure": {"status": "済"},
                      "kouiki": {"status": "実施中"}, "plan": {"status": "実施中"}, "committee": {"status": "済"},
                      "record_kdb": {"status": "未着手"}},
        "declaration2": {2022: {"nephropathy_program": False,
                                "requirements": {k: {"met": YES} for k in sr.DECLARATION2_ALWAYS_REQUIRED}},
                         2023: {"nephropathy_program": False,
                                "requirements": {k: {"met": YES} for k in sr.DECLARATION2_REQUIREMENTS}},
                         2024: {"nephropathy_program": True,
                                "requirements": {k: {"met": YES} for k in sr.DECLARATION2_REQUIREMENTS}}},
    }


HEADER = ("# 支援カルテ（保険者支援の記録）— デモ用の架空の記入例。scripts/build_support_demo.py が作成。\n"
          "# 書き方は docs/support_record.md、白紙の様式は data_templates/support_record_template.yaml。\n")


RENGOKAI_HEADER = ("# 連合会全体のチェックリスト（事務局の体制・ツールの収集・研修会の企画）— デモ用の架空の記入例。\n"
                   "# scripts/build_support_demo.py が作成。書き方は docs/support_record.md §1.3。\n")


def rengokai_record() -> dict:
    """The 連合会-wide items (scope 連合会): one done, one in progress, one not recorded (shown 未記入)."""
    return {"rengokai": {"name": "架空県国民健康保険団体連合会"},
            "checklist": {"office": {"status": "済", "date": D(2024, 4, 1),
                                     "note": "保健師2名と事務職1名のチームで担当し、異動時は引継ぎ訪問を行う"},
                          "tools": {"status": "実施中", "date": D(2024, 10, 15), "note": "県内の保険者の通知文の様式を収集中"}}}


def write_xlsx_template(path: Path) -> None:
    """The blank Excel form (docs/support_record.md §1.2): every sheet with its headers and one example row."""
    from hsutils.publish import report

    cols = sr.XLSX_SHEETS
    sheets = {
        "基本情報": pd.DataFrame({"項目": ["code", "name", "type", "structure", "partners"],
                                "値": ["17201", "○○市", "市町村", "", "市医師会、県保健福祉センター"]}),
        "担当者": pd.DataFrame([["保険者", "A", "", "国保年金課 保健師", "2024-04-01", "", "はい", "いいえ"],
                             ["連合会", "R1", "", "連合会 保健事業課 保健師", "2024-04-01", "", "", "いいえ"]],
                            columns=cols["担当者"]),
        "ヒアリング": pd.DataFrame({"項目": list(sr.hearing_items("市町村")), "内容": ""}),
        "訪問記録": pd.DataFrame([[1, "2024-05-10", "訪問", "R1", "A", "", "", ""]], columns=cols["訪問記録"]),
        "次の対応": pd.DataFrame([[1, "（合意した次の対応を書く）", "2024-07-31", "保険者", "未着手", ""]],
                              columns=cols["次の対応"]),
        "チェックリスト": pd.DataFrame({"項目": [i.id for i in sr.insurer_items("市町村")], "status": "未着手",
                                   "date": "", "note": [i.label for i in sr.insurer_items("市町村")]}),
        "宣言2": pd.DataFrame([[2024, "はい", k, "", t] for k, (_, t) in sr.DECLARATION2_REQUIREMENTS.items()],
                            columns=cols["宣言2"]),
    }
    report.write_xlsx(sheets, path)


def main() -> None:
    master = pd.read_csv(REPO / "hsutils" / "data" / "municipalities_jp.csv", dtype=str, comment="#")
    munis = master[(master["pref_code"] == "17") & (master["kind"] == "muni")]
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.yaml"):
        old.unlink()
    records = [(f"{code}_{name}.yaml", municipal_record(i, code, name))
               for i, (code, name) in enumerate(zip(munis["muni_code"], munis["name"])) if code not in NO_FILE]
    records.append(("KOUIKI17_広域連合.yaml", kouiki_record()))
    for fname, rec in records:
        text = HEADER + yaml.safe_dump(rec, allow_unicode=True, sort_keys=False, default_flow_style=False)
        (OUT / fname).write_text(text, encoding="utf-8")
        sr.read_record(OUT / fname)  # every example is valid
    text = RENGOKAI_HEADER + yaml.safe_dump(rengokai_record(), allow_unicode=True, sort_keys=False,
                                            default_flow_style=False)
    (OUT / sr.RENGOKAI_FILE).write_text(text, encoding="utf-8")
    assert sr.read_rengokai_record(OUT) is not None  # valid
    print(f"{len(records)} records + {sr.RENGOKAI_FILE} → {OUT}")
    template = REPO / "data_templates" / f"{sr.TEMPLATE_NAME}.xlsx"
    write_xlsx_template(template)
    sr.read_record(template)  # the blank form is a valid record
    sr.read_record(REPO / "data_templates" / f"{sr.TEMPLATE_NAME}.yaml")


if __name__ == "__main__":
    main()

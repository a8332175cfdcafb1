"""多剤・重複・睡眠薬 rules (docs/rules.md §10) on hand-built prescriptions at their boundaries.

Every expected value is worked out by hand from the rows built in each test.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from hsutils.inputs import claims_masters, claims_rules, uke
from hsutils.patterns import medication as med
from hsutils.core.errors import DataError, ParameterError

UKE = Path(__file__).parent / "data" / "uke"
P = med.medication_params()


def rx(person, ym, yj, prescriber="H1", form="内服", days=28, code=None):
    """One prescriptions row (schema of docs/claims_rules.md §5)."""
    return {"person_id": person, "muni_code": "17201", "ym": ym, "drug_code": code or f"6{yj[:8]}",
            "yj_code": yj, "efficacy_class": yj[:3], "form": form, "prescriber_code": prescriber,
            "dispenser_code": "P1", "dispensed": "院外", "days": days, "quantity": 1}


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows)


def n_ingredients(person, ym, n, prescriber="H1", **kw):
    """n distinct 内服 ingredients (7-digit YJ 2140001 … ), all of 薬効 214-219 by tens."""
    return [rx(person, ym, f"21{i // 10}{i:04d}F1001", prescriber, **kw) for i in range(n)]


# ---------------------------------------------------------------------------------------------
# §10.1–§10.2 counting and 多剤
# ---------------------------------------------------------------------------------------------
def test_polypharmacy_at_15_and_not_at_14():
    rows = n_ingredients("A", 202405, 15) + n_ingredients("B", 202405, 14)
    rows += [rx("B", 202405, "2649729S1001", form="外用")]      # a tape does not count
    rows += [rx("B", 202405, "2100000F2002", code="699999999")]  # same ingredient as B's first: once
    m = med.monthly_counts(frame(rows), P).set_index("person_id")
    assert m.loc["A", "n_drugs"] == 15 and m.loc["B", "n_drugs"] == 14
    f = med.person_flags(med.monthly_counts(frame(rows), P), 2024, P).set_index("person_id")
    assert bool(f.loc["A", "polypharmacy"]) and not bool(f.loc["B", "polypharmacy"])
    assert f.loc["A", "polypharmacy_months"] == 1
    p14 = med.medication_params(polypharmacy_threshold=14)
    f14 = med.person_flags(med.monthly_counts(frame(rows), p14), 2024, p14)
    assert f14["polypharmacy"].all()


def test_count_by_efficacy_days_and_excluded_classes():
    rows = n_ingredients("A", 202405, 15)            # 薬効 210 … 211: 15 ingredients in 2 classes
    rows += [rx("A", 202405, "6311001G1001", days=1)]  # a vaccine, 1 day
    m = med.monthly_counts(frame(rows), med.medication_params(count_by="efficacy")).iloc[0]
    assert m["n_drugs"] == 3                          # 210, 211, 631
    m = med.monthly_counts(frame(rows), P).iloc[0]
    assert m["n_drugs"] == 16
    m = med.monthly_counts(frame(rows), med.medication_params(exclude_efficacy=("631",))).iloc[0]
    assert m["n_drugs"] == 15
    short = [rx("C", 202405, "2140001F1001", days=14), rx("C", 202405, "2140002F1001", days=15)]
    m = med.monthly_counts(frame(short), med.medication_params(min_days=15)).iloc[0]
    assert m["n_drugs"] == 1                          # 14 days is below min_days 15, 15 is not
    br = med.count_breakdown(frame(rows + short), med.medication_params(min_days=15, exclude_efficacy=("631",)))
    assert br["処方の行数"].tolist() == [16, 0, 1, 1] and br["処方の行数"].sum() == len(rows + short)


def test_threshold_counts_by_hand():
    rows = n_ingredients("A", 202405, 15) + n_ingredients("B", 202406, 6) + n_ingredients("B", 202407, 10)
    rows += n_ingredients("C", 202303, 20)           # FY2022: not in FY2024
    t = med.threshold_counts(med.monthly_counts(frame(rows), P), 2024, thresholds=[6, 10, 11, 15, 16])
    assert t["persons"].tolist() == [2, 2, 1, 1, 0]


# ---------------------------------------------------------------------------------------------
# §10.3 重複
# ---------------------------------------------------------------------------------------------
def dup_rows(person, months, n_inst=2, yj="2149001F1001"):
    return [rx(person, ym, yj, prescriber=f"H{k}") for ym in months for k in range(n_inst)]


def test_duplicate_three_consecutive_months_but_not_two():
    rows = dup_rows("A", [202405, 202406, 202407]) + dup_rows("B", [202405, 202406])
    rows += dup_rows("C", [202405, 202406, 202407], n_inst=1)      # one institution: never 重複
    rows += dup_rows("D", [202405, 202406, 202408])                # a gap breaks the run
    m = med.monthly_counts(frame(rows), P)
    est = m[m["dup_established"]]
    assert est[["person_id", "ym"]].values.tolist() == [["A", 202407]]
    f = med.person_flags(m, 2024, P).set_index("person_id")
    assert f["duplicate"].to_dict() == {"A": True, "B": False, "C": False, "D": False}
    p2 = med.medication_params(duplicate_months=2)
    f2 = med.person_flags(med.monthly_counts(frame(rows), p2), 2024, p2).set_index("person_id")
    assert f2["duplicate"].to_dict() == {"A": True, "B": True, "C": False, "D": True}


def test_duplicate_runs_across_fiscal_and_calendar_year_ends():
    rows = dup_rows("A", [202402, 202403, 202404]) + dup_rows("B", [202312, 202401, 202402])
    m = med.monthly_counts(frame(rows), P)
    f23 = med.person_flags(m, 2023, P).set_index("person_id")["duplicate"].to_dict()
    f24 = med.person_flags(m, 2024, P).set_index("person_id")["duplicate"].to_dict()
    assert f23 == {"A": False, "B": True}            # B: Dec–Jan–Feb established in Feb 2024 (FY2023)
    assert f24 == {"A": True}                        # A: established in April 2024 (FY2024)


def test_duplicate_needs_the_same_class():
    rows = []
    for ym in (202405, 202406, 202407):
        rows += [rx("A", ym, "2149001F1001", "H1"), rx("A", ym, "2189001F1001", "H2")]  # 214 vs 218
        rows += [rx("B", ym, "2149001F1001", "H1"), rx("B", ym, "2149002F1001", "H2")]  # 214 twice
    f = med.person_flags(med.monthly_counts(frame(rows), P), 2024, P).set_index("person_id")
    assert f["duplicate"].to_dict() == {"A": False, "B": True}


def test_kdb_duplicate_count_by_hand():
    rows = dup_rows("A", [202405], n_inst=3)                               # 3 institutions × 1 薬効
    rows += dup_rows("B", [202405], n_inst=2)                              # 2 × 1: not KDB
    rows += dup_rows("C", [202405], n_inst=2) + dup_rows("C", [202405], n_inst=2, yj="2189001F1001")  # 2 × 2
    m = med.monthly_counts(frame(rows), P).set_index("person_id")
    assert m["kdb_duplicate"].to_dict() == {"A": True, "B": False, "C": True}
    assert m["n_dup_classes"].to_dict() == {"A": 1, "B": 1, "C": 2}
    assert m.loc["A", "n_prescribers"] == 3


# ---------------------------------------------------------------------------------------------
# §10.4 睡眠薬
# ---------------------------------------------------------------------------------------------
def test_two_hypnotics_at_once_and_long_term_use():
    zolpidem, brotizolam = "1129009F1001", "1124009F1001"
    rows = [rx("A", 202405, zolpidem, form="屯服"), rx("A", 202405, brotizolam, "H2")]
    rows += [rx("B", 202405, zolpidem), rx("B", 202405, zolpidem, "H2", code="699000099")]  # one ingredient
    months = [int(x) for x in pd.period_range("2023-05", "2024-04", freq="M").strftime("%Y%m")]  # 12 months
    rows += [rx("L", ym, zolpidem) for ym in months]
    rows += [rx("S", ym, zolpidem) for ym in months[1:]]                   # 11 months
    m = med.monthly_counts(frame(rows), P)
    by = m.set_index(["person_id", "ym"])
    assert by.loc[("A", 202405), "n_hypnotics"] == 2 and by.loc[("B", 202405), "n_hypnotics"] == 1
    assert by.loc[("A", 202405), "n_drugs"] == 1      # the 屯服 zolpidem is a hypnotic, not a 内服 drug
    f = med.person_flags(m, 2024, P).set_index("person_id")
    assert f["hypnotic_combination"].to_dict() == {"A": True, "B": False, "L": False, "S": False}
    assert f["hypnotic_long"].to_dict() == {"A": False, "B": False, "L": True, "S": False}
    assert m.loc[m["hypnotic_long"], "ym"].tolist() == [202404]


# ---------------------------------------------------------------------------------------------
# one count with claims_monthly (一体的実施 §6.1-3)
# ---------------------------------------------------------------------------------------------
def test_default_count_equals_claims_monthly_n_drugs():
    d = claims_rules.derive_tables(uke.read_uke([UKE / "ika_r05.UKE", UKE / "ika_h31.UKE", UKE / "chozai_r05.UKE"]),
                                   claims_masters.load_masters())
    m = med.monthly_counts(d.tables["prescriptions"], P).set_index(["person_id", "ym"])
    cm = d.tables["claims_monthly"].set_index(["person_id", "ym"])
    both = cm.index.intersection(m.index)
    assert (m.loc[both, "n_drugs"].to_numpy() == cm.loc[both, "n_drugs"].to_numpy()).all()
    assert (cm.loc[cm.index.difference(m.index), "n_drugs"] == 0).all()
    # tests/test_uke.py: metformin (院内 and 院外), amlodipine, suvorexant -> 3 内服;
    # zolpidem, brotizolam (屯服) and suvorexant are hypnotics
    a = m.loc[("00170019-石01-1234-01", 202305)]  # person key: docs/formats/person_key.md
    assert a["n_drugs"] == 3 and a["n_hypnotics"] == 3


def test_fallback_from_claims_monthly_is_polypharmacy_only():
    cm = pd.DataFrame({"person_id": ["A", "B", "C"], "muni_code": "17201", "ym": [202405, 202405, 202406],
                       "n_drugs": [15, 14, 0], "n_institutions": [3, 1, 1]})
    m = med.monthly_from_claims(cm)
    f = med.person_flags(m, 2024, P).set_index("person_id")
    assert f["polypharmacy"].to_dict() == {"A": True, "B": False}
    assert not f["duplicate"].any() and not f["hypnotic_combination"].any()


# ---------------------------------------------------------------------------------------------
# committee tables and the notice list
# ---------------------------------------------------------------------------------------------
def persons(ids, age_band="65-69"):
    return pd.DataFrame({"person_id": ids, "muni_code": "17201", "sex": [1, 2] * (len(ids) // 2) + [1] * (len(ids) % 2),
                         "age": 67, "age_band": age_band, "insurance": "国保"})


def test_notice_list_priority_and_committee_tables_hold_no_person():
    rows = n_ingredients("P-A", 202405, 16) + dup_rows("P-B", [202405, 202406, 202407])
    rows += n_ingredients("P-C", 202405, 15) + dup_rows("P-C", [202405, 202406, 202407])
    rows += n_ingredients("P-D", 202405, 3)
    pres = frame(rows)
    m = med.monthly_counts(pres, P)
    f = med.with_persons(med.person_flags(m, 2024, P), persons(["P-A", "P-B", "P-C", "P-D", "P-E"]))
    lst = med.notice_list(pres, m, f, 2024, P)
    # P-C has two reasons; P-A 16 drugs before P-B (1 drug); P-D and P-E are not listed
    assert lst["被保険者番号"].tolist() == ["P-C", "P-A", "P-B"]
    assert lst["抽出理由"].tolist() == ["多剤・重複", "多剤", "重複"]
    assert lst["優先順位"].tolist() == [1, 2, 3]
    assert lst.loc[2, "重複した薬効分類"] == "214 血圧降下剤"
    assert lst.loc[2, "処方医療機関（年度内）"] == "H0・H1"
    t = med.summary_counts(f, "sex")
    assert t.set_index("sex").loc["計", ["denominator", "polypharmacy", "duplicate"]].tolist() == [5, 2, 2]
    assert t.set_index("sex").loc["計", "polypharmacy_rate"] == pytest.approx(40.0)
    tables = [t, med.duplicate_class_counts(m, 2024, f["person_id"], P), med.institution_counts(f),
              med.threshold_counts(m, 2024)]
    ids = set(f["person_id"])
    for tab in tables:
        assert "person_id" not in tab.columns
        assert not ids & set(tab.astype(str).to_numpy().ravel())
    assert med.duplicate_class_counts(m, 2024, f["person_id"], P).values.tolist() == [["214", "血圧降下剤", 2]]


def test_parameters_are_checked_in_japanese():
    with pytest.raises(ParameterError, match="多剤の薬剤数"):
        med.medication_params(polypharmacy_threshold=0)
    with pytest.raises(ParameterError, match="数え方"):
        med.medication_params(count_by="brand")
    with pytest.raises(ParameterError, match="剤形"):
        med.medication_params(count_forms=("錠剤",))
    with pytest.raises(ParameterError, match="3桁"):
        med.medication_params(exclude_efficacy=("63",))


# ---------------------------------------------------------------------------------------------
# §10.7 notification records and before/after
# ---------------------------------------------------------------------------------------------
def test_read_notifications_lists_every_bad_row(tmp_path):
    p = tmp_path / "notices.csv"
    p.write_text("被保険者番号,通知日,通知方法\nA,2024-10-01,郵送\nB,2024/10/15,訪問\n,2024-10-01,郵送\n"
                 "Z,2024-10-01,郵送\nC,10月1日,郵送\nA,2024-11-01,電話\n", encoding="utf-8-sig")
    notices, excl = med.read_notifications(p, known_person_ids=["A", "B", "C"])
    assert notices["person_id"].tolist() == ["A", "B"]
    assert notices["notice_ym"].tolist() == [202410, 202410]
    assert excl["row"].tolist() == [4, 5, 6, 7]              # rows of the file (header = row 1)
    assert excl["column"].tolist() == ["被保険者番号", "被保険者番号", "通知日", "被保険者番号"]
    assert excl.loc[2, "value"] == "10月1日" and "YYYY-MM-DD" in excl.loc[2, "reason"]
    assert "2回目" in excl.loc[3, "reason"]
    assert len(notices) + len(excl) == 6                      # every row used or listed
    bad = tmp_path / "bad.csv"
    bad.write_text("被保険者番号,日付\nA,2024-10-01\n", encoding="utf-8")
    with pytest.raises(DataError, match="列「通知日」"):
        med.read_notifications(bad)
    with pytest.raises(DataError, match="見つかりません"):
        med.read_notifications(tmp_path / "none.csv")


def test_before_after_by_hand():
    rows = []
    for ym in (202407, 202408, 202409):
        rows += n_ingredients("N", ym, 3) + n_ingredients("K", ym, 2)
    rows += n_ingredients("N", 202410, 9)                          # the notice month is left out
    for ym in (202411, 202412, 202501):
        rows += n_ingredients("N", ym, 1) + n_ingredients("K", ym, 2)
    rows += n_ingredients("K", 202503, 2)                          # data end: March 2025
    m = med.monthly_counts(frame(rows), P)
    cm = pd.DataFrame({"person_id": ["N", "N"], "ym": [202408, 202412], "cost_outpatient": [3000, 600],
                       "cost_pharmacy": [0, 0]})
    notices = pd.DataFrame({"person_id": ["N"], "notice_ym": [202410]})
    per, s = med.before_after(m, cm, notices, comparison_ids=["N", "K"], windows=(3, 6))
    s = s.set_index(["window", "outcome", "group"])
    n3 = s.loc[(3, "n_drugs", med.GROUP_NOTIFIED)]
    assert (n3["n"], n3["before"], n3["after"], n3["change"]) == (1, 3, 1, -2)
    k3 = s.loc[(3, "n_drugs", med.GROUP_COMPARISON)]
    assert (k3["n"], k3["change"]) == (1, 0)                       # N is notified, so not a comparison
    assert s.loc[(3, "n_drugs", med.GROUP_DIFF), "change"] == -2
    c3 = s.loc[(3, "cost", med.GROUP_NOTIFIED)]
    assert (c3["before"], c3["after"]) == (1000, 200)              # (0+3000+0)/3, (0+600+0)/3
    assert s.loc[(6, "n_drugs", med.GROUP_NOTIFIED), "n"] == 0     # Oct + 6 > March 2025: left out
    t = med.evaluation_table(s.reset_index())
    assert t.loc[t["group"] == med.GROUP_DIFF, "n"].tolist()[0] == 1


def test_evaluation_year_and_demo_notices():
    notices = pd.DataFrame({"person_id": ["A", "B", "C"], "notice_ym": [202403, 202410, 202410]})
    assert med.evaluation_year(notices, [2023, 2024]) == 2024          # Oct 2024 is the most common
    assert med.evaluation_year(notices.iloc[:1], [2023, 2024]) == 2023  # March 2024 is FY2023
    with pytest.raises(DataError, match="2024年度"):
        med.evaluation_year(notices, [2022, 2023])
    with pytest.raises(DataError, match="使える行がありません"):
        med.evaluation_year(notices.iloc[:0], [2024])
    demo = med.demo_notifications(["P3", "P1", "P2"], 2023)
    assert demo["person_id"].tolist() == ["P1", "P3"] and set(demo["notice_ym"]) == {202310}


def test_notice_list_names_drugs_from_the_master_and_keeps_unknown_codes(tmp_path):
    pres = frame(dup_rows("P-B", [202405, 202406, 202407]) + [rx("P-B", 202407, "3999001F1001")])
    m = med.monthly_counts(pres, P)
    f = med.with_persons(med.person_flags(m, 2024, P), persons(["P-B"]))
    plain = med.notice_list(pres, m, f, 2024, P)
    assert plain.loc[0, "処方薬（最新の月）"] == "62149001F・63999001F"
    names = pd.Series({"62149001F": "降圧テスト錠５ｍｇ"})
    named = med.notice_list(pres, m, f, 2024, P, drug_names=names)
    # named when the master knows the code, the bare code when it does not
    assert named.loc[0, "処方薬（最新の月）"] == "降圧テスト錠５ｍｇ（62149001F）・63999001F"


def test_drug_names_come_from_the_data_folders_masters(tmp_path):
    import shutil

    from hsutils.inputs import claims_import, claims_masters

    assert claims_import.drug_names(tmp_path).empty          # CSV claims: no masters, no names
    shutil.copytree(claims_masters.synthetic_masters_dir(), tmp_path / claims_import.MASTERS_DIR)
    names = claims_import.drug_names(tmp_path)
    drug = claims_masters.load_masters(tmp_path / claims_import.MASTERS_DIR).drug
    assert len(names) == len(drug) > 0
    assert names[drug["code"].iloc[0]] == drug["name"].iloc[0]


def test_notice_list_masters_come_from_the_folder_the_cache_was_built_from(tmp_path, monkeypatch, demo_data_dir):
    """A batch passes notebook 07 only `cache_dir` (no `data_dir`): the 医薬品マスター must be read
    from the data folder of the cache (meta.json), not from the demo folder `settings.data_dir(None)`
    falls back to (found by the before/after table comparison of session 5: bare codes in a batch)."""
    from hsutils.core import settings
    from hsutils.running import notebook

    cache = os.environ[settings.ENV_CACHE_DIR]
    monkeypatch.delenv(settings.ENV_DATA_DIR)  # as in a batch's kernel
    ctx = notebook.start("07_medication", "17201", cache_dir=cache, out_dir=tmp_path / "out")
    assert settings.data_dir(None) != Path(demo_data_dir).resolve()  # the fallback is another folder
    assert ctx.data_folder() == Path(demo_data_dir).resolve()        # the cache's own data folder
    assert ctx.data_folder(tmp_path) == tmp_path.resolve()            # an explicit data_dir wins


# ---------------------------------------------------------------------------------------------
# Loading: a municipal run reads its own partitions; the prefecture's flags are counted once
# ---------------------------------------------------------------------------------------------
def _small_cache(tmp_path) -> Path:
    """A partitioned cache of two municipalities: A (17201) 15 drugs in May 2024, B (17201) 14,
    C (17324) 16 in May 2023 and 2024; M moves 17201 (FY2023) → 17324 (FY2024) with 15 drugs in
    May 2023 and one 薬効 214 from two institutions in Feb, Mar (at 17201) and Apr 2024 (at 17324):
    a 重複 of 3 consecutive months completed in FY2024, from his history before the move."""
    from hsutils.analysis import pipeline

    rows = n_ingredients("A", 202405, 15) + n_ingredients("B", 202405, 14)
    rows += n_ingredients("C", 202305, 16) + n_ingredients("C", 202405, 16) + n_ingredients("M", 202305, 15)
    rows += [rx("M", ym, "2140001F1001", h) for ym in (202402, 202403, 202404) for h in ("H1", "H2")]
    prescriptions = frame(rows)
    prescriptions.loc[prescriptions["person_id"] == "C", "muni_code"] = "17324"
    prescriptions.loc[(prescriptions["person_id"] == "M") & (prescriptions["ym"] == 202404), "muni_code"] = "17324"
    ids = ["A", "B", "C", "M"]
    py = pd.concat([pd.DataFrame({"person_id": ids, "fy": fy, "muni_code": ["17201", "17201", "17324", muni_m],
                                  "sex": [1, 2, 1, 2], "age": 70, "age_band": "70-74", "insurance": "国保"})
                    for fy, muni_m in ((2023, "17201"), (2024, "17324"))], ignore_index=True)
    pipeline.write_partitioned(py, tmp_path, {"enrollment": py[["person_id", "fy", "muni_code"]],
                                              "prescriptions": prescriptions})
    (tmp_path / "meta.json").write_text('{"data_hash": "x", "fiscal_years": [2023, 2024]}', encoding="utf-8")
    for name in ("strata", "municipalities", "districts", "import_summary", "exclusions"):
        pd.DataFrame({"x": [1]}).to_parquet(tmp_path / f"{name}.parquet")
    return tmp_path


def test_municipal_read_gives_the_same_flags_with_fewer_columns(tmp_path):
    from hsutils.analysis import pipeline

    cache = _small_cache(tmp_path)
    whole = pipeline.load_prepared(cache, with_tables=("prescriptions",))
    own = pipeline.load_prepared(cache, with_tables=med.TABLES, munis=["17201"])
    assert list(own.tables["prescriptions"].columns) == list(med.PRESCRIPTION_COLUMNS)
    assert "dispenser_code" in whole.tables["prescriptions"].columns
    # 17201's partitions: A, B and the mover M's whole history; not C
    assert set(own.tables["prescriptions"]["person_id"]) == {"A", "B", "M"}
    assert set(own.person_year["person_id"]) == {"A", "B", "M"} and own.cache_dir == cache
    for fy in (2023, 2024):
        mine = med.person_flags(med.monthly_counts(own.tables["prescriptions"], P), fy, P)
        every = med.person_flags(med.monthly_counts(whole.tables["prescriptions"], P), fy, P)
        pd.testing.assert_frame_equal(mine, every[every["person_id"] != "C"].reset_index(drop=True))


def test_prefecture_flags_of_a_run_holding_every_row_equal_the_partitions_counts(tmp_path, monkeypatch):
    """A prefecture run holds every municipality's rows: it counts them at once (no partition read
    again) and saves exactly the table the municipal runs count partition by partition (M's 重複 from
    his whole history either way; rows by municipality, year, insurance)."""
    from hsutils.analysis import pipeline

    cache = _small_cache(tmp_path)
    by_parts = med.prefecture_flags(pipeline.load_prepared(cache, with_tables=med.TABLES, munis=["17324"]),
                                    [2023, 2024], P)
    for f in (cache / "derived").glob("medication_flag_counts_*"):
        f.unlink()
    monkeypatch.setattr(pipeline, "each_municipality", lambda *a, **k: pytest.fail("partitions read again"))
    at_once = med.prefecture_flags(pipeline.load_prepared(cache, with_tables=med.TABLES), [2023, 2024], P)
    pd.testing.assert_frame_equal(at_once, by_parts, check_exact=True)
    assert at_once.values.tolist()[-1] == [2024, "17324", "国保", 2, 1, 1, 0, 0]


def test_prefecture_flags_are_counted_per_municipality_once_and_kept_in_the_cache(tmp_path, capsys):
    """Hand-worked counts per fiscal year × municipality × insurance (all 国保): FY2023 17201 A, B, M
    (多剤 M), 17324 C (多剤); FY2024 17201 A, B (多剤 A), 17324 C, M (多剤 C, 重複 M: his Feb–Mar 2024
    prescriptions were at 17201, each_municipality gives 17324 his whole history). The counts equal
    those of the flags of all prescriptions at once; counted once per parameters, then read."""
    from hsutils.analysis import pipeline

    cache = _small_cache(tmp_path)
    own = pipeline.load_prepared(cache, with_tables=med.TABLES, munis=["17324"])
    got = med.prefecture_flags(own, [2023, 2024], P)
    assert "【初回のみ】" in capsys.readouterr().out
    saved = list((cache / "derived").glob("medication_flag_counts_*.parquet"))
    assert len(saved) == 1
    assert got.columns.tolist() == list(med.FLAG_COUNT_COLUMNS)  # counts only: no person in the cache's table
    # fy, muni, insurance, persons, 多剤, 重複, 睡眠薬の併用, 睡眠薬の長期処方
    assert got.values.tolist() == [[2023, "17201", "国保", 3, 1, 0, 0, 0], [2024, "17201", "国保", 2, 1, 0, 0, 0],
                                   [2023, "17324", "国保", 1, 1, 0, 0, 0], [2024, "17324", "国保", 2, 1, 1, 0, 0]]
    # the same as counting the flags of every municipality's prescriptions at once
    whole = pipeline.load_prepared(cache, with_tables=("prescriptions",))
    expected = med.flag_counts(med.yearly_flags(med.monthly_counts(whole.tables["prescriptions"], P), [2023, 2024], P),
                               whole.person_year)
    key = ["fy", "muni_code", "insurance"]
    pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True),
                                  expected.sort_values(key).reset_index(drop=True))
    # rates: a municipality = its rows, the prefecture = the sum over its municipalities
    rates = med.flag_rates_by(got, [2024], "muni_code", "17", "全体", ["polypharmacy", "duplicate"])
    assert rates[["group", "flag", "numerator", "denominator"]].values.tolist() == [
        ["17201", "polypharmacy", 1, 2], ["17324", "polypharmacy", 1, 2],
        ["17201", "duplicate", 0, 2], ["17324", "duplicate", 1, 2]]
    pref = med.flag_rates_by(got, [2023, 2024], None, "17", "全体", ["polypharmacy"])
    assert pref[["fy", "group", "numerator", "denominator"]].values.tolist() == [[2023, "計", 2, 4],
                                                                                 [2024, "計", 2, 4]]
    assert med.flag_rates_by(got, [2024], None, "17324", "後期", ["polypharmacy"]).empty  # no 後期 person
    # the next run reads the saved counts (no 初回 message)
    again = med.prefecture_flags(own, [2024, 2023], P)
    assert "初回" not in capsys.readouterr().out
    pd.testing.assert_frame_equal(again, got)
    # other parameters: counted again, kept beside (14 drugs: B too)
    c14 = med.prefecture_flags(own, [2024], med.medication_params(polypharmacy_threshold=14))
    assert c14[["muni_code", "polypharmacy"]].values.tolist() == [["17201", 2], ["17324", 1]]
    assert len(list((cache / "derived").glob("medication_flag_counts_*.parquet"))) == 2


def test_municipal_run_reads_no_other_municipality_s_person_rows(tmp_path, monkeypatch):
    """Building the counts reads one municipality's partitions at a time (never all at once); a
    municipal run with the saved counts reads its own municipality's partitions only."""
    from hsutils.analysis import pipeline

    cache = _small_cache(tmp_path)
    calls = []
    real = pipeline.read_partitioned

    def spy(folder, munis=None, *a, **kw):
        calls.append((Path(folder).name, None if munis is None else list(munis)))
        return real(folder, munis, *a, **kw)

    monkeypatch.setattr(pipeline, "read_partitioned", spy)
    first = pipeline.load_prepared(cache, with_tables=med.TABLES, munis=["17201"])
    med.prefecture_flags(first, [2023, 2024], P)
    assert ("person_year", ["17324"]) in calls and ("prescriptions", ["17324"]) in calls
    assert all(m is not None and len(m) == 1 for _, m in calls)
    calls.clear()
    monkeypatch.setattr(pipeline, "each_municipality", lambda *a, **k: pytest.fail("counted again"))
    own = pipeline.load_prepared(cache, with_tables=med.TABLES, munis=["17324"])
    counts = med.prefecture_flags(own, [2023, 2024], P)
    assert calls and all(m == ["17324"] for _, m in calls)
    assert set(counts["muni_code"]) == {"17201", "17324"}


def test_prefecture_flags_fall_back_to_claims_when_the_prescriptions_folder_is_empty(tmp_path):
    """Data with CSV claims (no UKE): the cache has an empty `prescriptions` folder. The prefecture's
    flags come from claims_monthly.n_drugs (多剤 only), not a pyarrow error on the empty folder."""
    from hsutils.analysis import pipeline

    py = pd.DataFrame({"person_id": ["A", "B"], "fy": 2024, "muni_code": "17201", "sex": [1, 2], "age": 70,
                       "age_band": "70-74", "insurance": "国保"})
    cm = pd.DataFrame({"person_id": ["A", "B"], "muni_code": "17201", "ym": [202405, 202405],
                       "n_drugs": [15, 14], "n_institutions": [3, 1]})
    pipeline.write_partitioned(py, tmp_path, {"enrollment": py[["person_id", "fy", "muni_code"]],
                                              "claims_monthly": cm})
    (tmp_path / "prescriptions").mkdir()
    assert not pipeline.has_parts(tmp_path / "prescriptions") and pipeline.has_parts(tmp_path / "claims_monthly")
    (tmp_path / "meta.json").write_text('{"data_hash": "x", "fiscal_years": [2024]}', encoding="utf-8")
    for name in ("strata", "municipalities", "districts", "import_summary", "exclusions"):
        pd.DataFrame({"x": [1]}).to_parquet(tmp_path / f"{name}.parquet")
    own = pipeline.load_prepared(tmp_path, with_tables=med.TABLES, munis=["17201"])
    counts = med.prefecture_flags(own, [2024], P)
    # by hand: A has 15 drugs in May 2024 (多剤), B 14 (not)
    assert counts[["fy", "muni_code", "persons", "polypharmacy", "duplicate"]].values.tolist() == [
        [2024, "17201", 2, 1, 0]]

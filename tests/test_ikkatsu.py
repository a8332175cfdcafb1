"""Tests of hsutils.patterns.ikkatsu (notebook 03 一体的実施) on hand-made persons, plus the privacy of the
executed notebook (no person_id in the HTML report, no count 1–9 in the committee tables)."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hsutils.rules import programs
from hsutils.publish import privacy, report
from hsutils.patterns import ikkatsu
from hsutils.rules.programs import IkkatsuParams

MARK = privacy.SUPPRESSION_MARK
FY = 2024
MUNIS = pd.DataFrame({"muni_code": ["17201", "17202"], "name": ["甲市", "乙町"], "pref_code": ["17", "17"],
                      "pref_name": ["石川県", "石川県"], "medical_area_code": ["1", "2"],
                      "medical_area": ["南加賀", "能登中部"]})
DISTRICTS = pd.DataFrame({"muni_code": ["17201", "17201"], "district_code": ["01", "02"], "name": ["東", "西"]})


def _persons(rows) -> pd.DataFrame:
    """person_year rows: (person_id, muni, district, insurance, age) with sex 2 and fy 2024."""
    df = pd.DataFrame(rows, columns=["person_id", "muni_code", "district_code", "insurance", "age"])
    df["fy"] = FY
    df["sex"] = 2
    df["age_band"] = np.where(df["age"] >= 75, "80-84", "70-74")
    return df


def _oral_population():
    """17201: 東 12 persons (5 口腔), 西 8 (1 口腔); 17202: 30 persons (4 口腔); plus two rows that
    are not in the criteria population (国保 70 y, 後期 74 y) flagged anyway."""
    rows, oral = [], []
    for i in range(12):
        rows.append((f"A{i:03d}", "17201", "01", "後期", 80))
        oral.append(i < 5)
    for i in range(8):
        rows.append((f"B{i:03d}", "17201", "02", "後期", 82))
        oral.append(i < 1)
    for i in range(30):
        rows.append((f"C{i:03d}", "17202", "", "後期", 81))
        oral.append(i < 4)
    rows += [("X001", "17201", "01", "国保", 70), ("X002", "17201", "02", "後期", 74)]
    oral += [True, True]
    py = _persons(rows)
    flags = pd.DataFrame(False, index=py.index, columns=list(ikkatsu.CRITERIA_IDS) + [ikkatsu.ANY_ID])
    flags["ik_oral"] = oral
    flags[ikkatsu.ANY_ID] = oral
    return py, flags


def test_criteria_table_counts_rates_and_standardised_ratio():
    py, flags = _oral_population()
    strata = ikkatsu.criteria_strata(py, flags)
    t = ikkatsu.criteria_table(strata, MUNIS, DISTRICTS, "17201", FY, reference_label="石川県")
    oral = t[t["criterion_id"] == "ik_oral"].set_index("area")
    assert list(t.columns[:11]) == ikkatsu.TABLE_COLUMNS
    assert list(oral.index) == ["甲市", "東", "西", "石川県"]
    assert oral.loc["甲市", "count"] == 6 and oral.loc["甲市", "denominator"] == 20  # X001, X002 not counted
    assert oral.loc["東", "count"] == 5 and oral.loc["東", "denominator"] == 12
    assert oral.loc["西", "count"] == 1 and oral.loc["西", "denominator"] == 8
    assert oral.loc["石川県", "count"] == 10 and oral.loc["石川県", "denominator"] == 50
    assert oral.loc["甲市", "rate"] == pytest.approx(30.0)
    assert oral.loc["甲市", "rate_lower"] == pytest.approx(14.548, abs=1e-3)  # Wilson 6/20
    assert oral.loc["甲市", "rate_upper"] == pytest.approx(51.897, abs=1e-3)
    assert oral.loc["東", "rate"] == pytest.approx(41.667, abs=1e-3)
    assert oral.loc["石川県", "rate"] == pytest.approx(20.0)
    # 標準化該当比: E = 20 × 0.2 = 4, O = 6; exact Poisson limits 2.2019 and 13.0594 divided by 4
    assert oral.loc["甲市", "sr"] == pytest.approx(1.5)
    assert oral.loc["甲市", "sr_lower"] == pytest.approx(0.5505, abs=1e-4)
    assert oral.loc["甲市", "sr_upper"] == pytest.approx(3.2649, abs=1e-4)
    assert oral.loc["甲市", "comparison"] == "有意差なし"
    assert np.isnan(oral.loc["石川県", "sr"]) and oral.loc["石川県", "comparison"] == "（基準）"
    names = t.drop_duplicates("criterion_id").set_index("criterion_id")["criterion_name"]
    assert names["ik_oral"] == "口腔" and names["ik_any"] == "いずれかに該当"
    assert (t.loc[t["criterion_id"] == "ik_undernutrition", "count"] == 0).all()


def test_min_age_parameter_widens_the_population():
    py, flags = _oral_population()
    strata = ikkatsu.criteria_strata(py, flags, IkkatsuParams(min_age=65))
    t = ikkatsu.criteria_table(strata, MUNIS, DISTRICTS, "17201", FY)
    row = t[(t["criterion_id"] == "ik_oral") & (t["area"] == "甲市")].iloc[0]
    assert (row["count"], row["denominator"]) == (7, 21)  # X002 (後期 74) now counted, 国保 X001 not


def test_suppression_primary_and_secondary_across_districts():
    py, flags = _oral_population()
    t = ikkatsu.criteria_table(ikkatsu.criteria_strata(py, flags), MUNIS, DISTRICTS, "17201", FY,
                               reference_label="石川県")
    shown = ikkatsu.suppress_area_table(t, threshold=10).set_index(["criterion_id", "area"])
    assert shown.loc[("ik_oral", "甲市"), "count"] == MARK  # 6 < 10
    assert shown.loc[("ik_oral", "甲市"), "sr"] == MARK and shown.loc[("ik_oral", "甲市"), "suppressed"]
    assert shown.loc[("ik_oral", "石川県"), "count"] == 10
    assert shown.loc[("ik_oral", "西"), "denominator"] == MARK  # 8 persons
    assert shown.loc[("ik_oral", "東"), "denominator"] == MARK  # secondary: 20 − 12 would reveal 西's 8
    assert shown.loc[("ik_oral", "甲市"), "denominator"] == 20
    # threshold 3: 西 (1) is hidden, and 東 (5) too, or 甲市 6 − 東 5 would reveal it
    s3 = ikkatsu.suppress_area_table(t, threshold=3).set_index(["criterion_id", "area"])
    assert s3.loc[("ik_oral", "西"), "count"] == MARK
    assert s3.loc[("ik_oral", "東"), "count"] == MARK and s3.loc[("ik_oral", "東"), "rate"] == MARK
    assert s3.loc[("ik_oral", "甲市"), "count"] == 6
    assert s3.loc[("ik_undernutrition", "東"), "count"] == 0  # zeros are shown
    privacy.assert_no_small_counts(s3, ["count", "denominator"], threshold=3)
    # a municipality without districts: a hidden municipal count does not hide the reference
    t2 = ikkatsu.criteria_table(ikkatsu.criteria_strata(py, flags), MUNIS, DISTRICTS, "17202", FY,
                                reference_label="石川県")
    s2 = ikkatsu.suppress_area_table(t2, threshold=10).set_index(["criterion_id", "area"])
    assert s2.loc[("ik_oral", "乙町"), "count"] == MARK and s2.loc[("ik_oral", "石川県"), "count"] == 10


def test_suppress_parts_hides_the_partner_of_a_small_part():
    dist = pd.DataFrame({"n_criteria": ["1つのみ", "2つ以上", "合計"], "count": [276, 3, 279],
                         "share": [98.9, 1.1, 100.0]})
    out = ikkatsu.suppress_parts(dist, "count", ["share"], total_label="合計", label_col="n_criteria")
    assert list(out["count"]) == [MARK, MARK, 279]
    assert list(out["share"]) == [MARK, MARK, 100.0]
    summary = pd.DataFrame({"approach": [ikkatsu.APPROACH_HIGH, ikkatsu.APPROACH_POPULATION], "count": [12, 4]})
    assert list(ikkatsu.suppress_parts(summary)["count"]) == [MARK, MARK]
    ok = pd.DataFrame({"approach": ["a", "b"], "count": [12, 0]})
    assert list(ikkatsu.suppress_parts(ok)["count"]) == [12, 0]


def test_criteria_count_distribution():
    m = pd.DataFrame({"口腔": [True, True, False, False, True], "多剤": [True, False, False, True, True],
                      "睡眠薬": [False, False, False, False, True]})
    d = ikkatsu.criteria_count_distribution(m)
    assert list(d["count"]) == [2, 2, 4]  # one criterion: persons 2 and 4; two or more: 1 and 5
    assert list(d["share"]) == [50.0, 50.0, 100.0]


# ------------------------------------------------------------------ questionnaire profile

def _questionnaire_persons() -> pd.DataFrame:
    """17201: P1–P3 answer, P4 answered nothing; 17202: six persons all without risk answers;
    N1 (国保 70) has risk answers but is not 後期高齢者."""
    py = _persons([("P1", "17201", "01", "後期", 80), ("P2", "17201", "01", "後期", 85),
                   ("P3", "17201", "02", "後期", 90), ("P4", "17201", "02", "後期", 77),
                   *[(f"Q{i}", "17202", "", "後期", 80) for i in range(6)],
                   ("N1", "17201", "01", "国保", 70)])
    ok = {"q1": 1, "q2": 1, "q3": 1, "q4": 2, "q5": 2, "q6": 2, "q7": 2, "q8": 2, "q9": 1, "q10": 2,
          "q11": 2, "q12": 2, "q13": 1, "q14": 1, "q15": 1}
    for q, v in ok.items():
        py[q] = pd.array([v] * len(py), dtype="Int64")
    py.loc[py["person_id"] == "P4", list(ok)] = pd.NA
    # P1: q1 よくない (5), q4 はい; P2: q1 あまりよくない (4), q5 はい, q9 いいえ; P3: q1 ふつう, q4 missing
    py.loc[py["person_id"] == "P1", ["q1", "q4"]] = [5, 1]
    py.loc[py["person_id"] == "P2", ["q1", "q5", "q9"]] = [4, 1, 2]
    py.loc[py["person_id"] == "P3", ["q1", "q4"]] = [3, pd.NA]
    py.loc[py["person_id"] == "N1", ["q1", "q4", "q5"]] = [5, 1, 1]
    return py


def test_questionnaire_profile_items_and_domains():
    py = _questionnaire_persons()
    prof = ikkatsu.questionnaire_profile(py, FY, "17201", MUNIS, threshold=1).set_index("item_id")
    assert len(prof) == 25  # 15 items + 10 domains
    assert prof.loc["q1", "respondents"] == 3 and prof.loc["q1", "count"] == 2  # P4 and N1 not counted
    assert prof.loc["q1", "rate"] == pytest.approx(66.667, abs=1e-3)
    assert prof.loc["q1", "rate_lower"] == pytest.approx(20.766, abs=1e-3)  # Wilson 2/3
    assert prof.loc["q1", "ref_respondents"] == 9 and prof.loc["q1", "ref_count"] == 2
    assert prof.loc["q1", "ref_rate"] == pytest.approx(22.222, abs=1e-3)
    assert prof.loc["q1", "comparison"] == "有意差なし"  # 20.8 < 22.2
    assert prof.loc["q4", "respondents"] == 2 and prof.loc["q4", "count"] == 1  # P3 skipped ④
    assert prof.loc["口腔機能", "respondents"] == 3 and prof.loc["口腔機能", "count"] == 2  # ④ or ⑤
    assert prof.loc["運動・転倒", "count"] == 1 and prof.loc["運動・転倒", "rate"] == pytest.approx(33.333, abs=1e-3)
    assert prof.loc["q12", "count"] == 0 and prof.loc["q12", "rate"] == 0.0
    # range over municipalities (threshold 1: every municipality counts): 乙町 0 %, 甲市 66.7 %
    assert prof.loc["q1", "min"] == 0.0 and prof.loc["q1", "max"] == pytest.approx(66.667, abs=1e-3)
    assert prof.loc["q1", "kind"] == "項目" and prof.loc["健康状態", "kind"] == "領域"
    assert prof.loc["q1", "item_name"] == "①健康状態（あまりよくない・よくない）"
    shown = ikkatsu.suppress_profile(ikkatsu.questionnaire_profile(py, FY, "17201", MUNIS)).set_index("item_id")
    assert shown.loc["q1", "count"] == MARK and shown.loc["q1", "rate"] == MARK
    assert np.isnan(shown.loc["q1", "min"])  # no municipality has ≥ 10 respondents: no published range


def test_district_frailty_compares_districts_with_the_municipality():
    py = _questionnaire_persons()
    d = ikkatsu.district_frailty(py, FY, "17201", DISTRICTS, ["口腔機能", "運動・転倒"])
    oral = d[d["item_id"] == "口腔機能"].set_index("area")
    assert list(oral.index) == ["東", "西", "市町村全体"]
    assert (oral.loc["東", "respondents"], oral.loc["東", "count"]) == (2, 2)
    assert (oral.loc["西", "respondents"], oral.loc["西", "count"]) == (1, 0)  # P4 answered nothing
    assert oral.loc["市町村全体", "rate"] == pytest.approx(66.667, abs=1e-3)
    assert oral.loc["東", "muni_rate"] == pytest.approx(66.667, abs=1e-3)
    assert ikkatsu.district_frailty(py, FY, "17202", DISTRICTS).empty  # no districts
    shown = ikkatsu.suppress_district_frailty(d)
    privacy.assert_no_small_counts(shown, ["count", "respondents"])


# ------------------------------------------------------------------ priority list and approach

def test_approach_rule():
    f = pd.DataFrame(False, index=range(6), columns=list(ikkatsu.CRITERIA_IDS))
    f.loc[0, "ik_oral"] = True                                    # questionnaire only
    f.loc[1, ["ik_oral", "ik_physical_frailty"]] = True           # questionnaire only
    f.loc[2, ["ik_oral", "ik_polypharmacy"]] = True               # + 多剤
    f.loc[3, "ik_health_unknown"] = True
    f.loc[4, "ik_kidney_untreated"] = True
    assert list(ikkatsu.approach(f)) == [ikkatsu.APPROACH_POPULATION, ikkatsu.APPROACH_POPULATION,
                                         ikkatsu.APPROACH_HIGH, ikkatsu.APPROACH_HIGH, ikkatsu.APPROACH_HIGH, ""]
    assert ikkatsu.APPROACH_HIGH == "ハイリスクアプローチ"
    assert ikkatsu.APPROACH_POPULATION == "ポピュレーションアプローチ"


def test_priority_list_has_exactly_the_persons_meeting_any_criterion():
    py = _persons([("A1", "17201", "01", "後期", 88), ("A2", "17201", "02", "後期", 79),
                   ("A3", "17201", "01", "後期", 80), ("A4", "17201", "01", "後期", 76),
                   ("B1", "17202", "", "後期", 90), ("N1", "17201", "01", "国保", 70)])
    py["has_kenshin"] = [True, False, True, False, True, False]
    py["bmi"] = [18.5, np.nan, 22.0, np.nan, 19.0, np.nan]
    py["hba1c"] = [8.4, np.nan, 5.6, np.nan, 6.0, np.nan]
    py["sbp"] = [150.0, np.nan, 120.0, np.nan, 130.0, np.nan]
    py["dbp"] = [90.0, np.nan, 70.0, np.nan, 80.0, np.nan]
    py["egfr_calc"] = [40.2, np.nan, 70.0, np.nan, 60.0, np.nan]
    py["urine_protein"] = [2.0, np.nan, 0.0, np.nan, 1.0, np.nan]
    py["max_drugs"] = pd.array([16, 3, 2, pd.NA, 5, 1], dtype="Int64")
    py["last_claim_ym"] = pd.array([202503, 202411, 202502, pd.NA, 202501, 202503], dtype="Int64")
    py["kaigo_certified"] = [False, True, False, False, False, False]
    py["kaigo_level"] = pd.Series([None, "要介護2", None, None, None, None], dtype="str")
    earlier = py[py["person_id"] == "A2"].assign(fy=2022, has_kenshin=True)  # A2's last checkup: 2022
    person_year = pd.concat([py, earlier], ignore_index=True)
    f = pd.DataFrame(False, index=py.index, columns=list(ikkatsu.CRITERIA_IDS))
    f.loc[0, ["ik_undernutrition", "ik_polypharmacy", "ik_poor_control"]] = True  # A1
    f.loc[1, ["ik_oral", "ik_physical_frailty"]] = True                         # A2
    f.loc[4, "ik_oral"] = True                                                   # B1: other municipality
    f.loc[5, "ik_oral"] = True                                                   # N1: not 後期
    f["ik_any"] = f.any(axis=1)
    pl = ikkatsu.priority_list(person_year, f, FY, "17201", districts=DISTRICTS)
    assert list(pl["person_id"]) == ["A1", "A2"]  # A3, A4 meet nothing; B1, N1 outside
    a1, a2 = pl.iloc[0], pl.iloc[1]
    assert a1["criteria"] == "低栄養、服薬（多剤）、重症化予防（コントロール不良）"
    assert a1["n_criteria"] == 3 and a1["approach"] == ikkatsu.APPROACH_HIGH and a1["priority"] == 1
    assert a1["actions"].startswith("栄養相談・訪問（管理栄養士）／服薬状況の確認")
    assert (a1["bmi"], a1["hba1c"], a1["sbp"], a1["dbp"], a1["egfr"]) == (18.5, 8.4, 150.0, 90.0, 40.2)
    assert a1["urine_protein"] == "1+" and a1["max_drugs"] == 16
    assert a1["last_checkup_fy"] == 2024 and a1["last_claim_ym"] == 202503
    assert a1["district"] == "東" and a1["sex"] == "女" and a1["kaigo_level"] == "認定なし"
    assert a2["criteria"] == "口腔、身体的フレイル" and a2["approach"] == ikkatsu.APPROACH_POPULATION
    assert a2["last_checkup_fy"] == 2022 and a2["kaigo_level"] == "要介護2" and a2["district"] == "西"
    jp = ikkatsu.japanese_headers(pl)
    assert {"被保険者番号", "該当基準", "推奨アプローチ", "最終健診年度", "要介護度"} <= set(jp.columns)
    s = ikkatsu.priority_summary(pl)
    assert list(s["count"]) == [1, 1] and "person_id" not in s.columns


# ------------------------------------------------------------------ on the demo data

def test_default_flags_equal_recomputation_and_cached_strata(prepared):
    fy = prepared.fiscal_years[-1]
    cached = ikkatsu.criteria_flags(prepared.person_year, fy, IkkatsuParams(), prepared.tables)
    t = prepared.tables
    fresh = programs.ikkatsu_flags(prepared.person_year, t["claims_monthly"], t["kaigo"], t["questionnaire"], fy)
    pd.testing.assert_frame_equal(cached, fresh[cached.columns], check_dtype=False)
    strata = ikkatsu.criteria_strata(prepared.person_year, cached)
    keys = ["fy", "muni_code", "district_code", "sex", "age_band", "indicator_id"]

    def canonical(s):
        s = s.astype({k: str for k in keys})
        return s.sort_values(keys).reset_index(drop=True)[keys + ["numerator", "denominator"]]

    mine = canonical(strata[strata["indicator_id"] != "ik_any"])
    ref = canonical(prepared.strata[prepared.strata["indicator_id"].str.startswith("ik_")
                                    & (prepared.strata["fy"] == fy)])
    pd.testing.assert_frame_equal(mine, ref, check_dtype=False)
    stricter = ikkatsu.criteria_flags(prepared.person_year, fy, IkkatsuParams(drugs_threshold=20), prepared.tables)
    assert stricter["ik_polypharmacy"].sum() <= cached["ik_polypharmacy"].sum()
    table, seconds = ikkatsu.threshold_counts(prepared.person_year, prepared.tables, fy,
                                              IkkatsuParams(drugs_threshold=20), "17201")
    assert seconds > 0 and list(table["基準"])[-1] == "いずれかに該当"
    privacy.assert_no_small_counts(table, ["市町村 人数", "県 人数"])


def test_threshold_counts_with_default_thresholds_count_the_cached_flags(prepared):
    """Default thresholds: the shared pass's flags are the recomputed flags (same rows, same values),
    so the table is counted from them without judging the prefecture again (seconds None)."""
    fy = prepared.fiscal_years[-1]
    cols = list(ikkatsu.CRITERIA_IDS) + [ikkatsu.ANY_ID]
    recomputed = programs.ikkatsu_flags(prepared.person_year, prepared.tables["claims_monthly"],
                                        prepared.tables.get("kaigo"), prepared.tables.get("questionnaire"), fy)[cols]
    cached = ikkatsu.criteria_flags(prepared.person_year, fy, IkkatsuParams(), prepared.tables)
    pd.testing.assert_frame_equal(cached, recomputed.astype(bool))
    table, seconds = ikkatsu.threshold_counts(prepared.person_year, prepared.tables, fy, IkkatsuParams(), "17201")
    assert seconds is None and "再計算なし" in ikkatsu.recount_text(seconds)
    py = prepared.person_year.loc[cached.index]
    here = ikkatsu.eligible(py) & ikkatsu.in_area(py, "17201")
    n = int(cached.loc[here, "ik_any"].sum())
    assert n >= 10 and table["市町村 人数"].iloc[-1] == n  # いずれかに該当, by hand from the flags
    assert "秒" in ikkatsu.recount_text(0.5)


def test_threshold_explorer_recomputes_when_a_slider_moves(prepared):
    fy = prepared.fiscal_years[-1]
    panel = ikkatsu.threshold_explorer(prepared.person_year, prepared.tables, fy, "17201")
    assert len(panel.controls) == 8
    drugs = panel.controls["drugs_threshold"]
    assert drugs.description == "多剤: 薬剤数 以上" and drugs.value == 15 and drugs.continuous_update is False
    first = panel.first[1].data  # the table shown for the parameters' values
    drugs.value = 20  # triggers the vectorised recomputation (programs.ikkatsu_flags)
    again = panel.update()[1].data
    expected, _ = ikkatsu.threshold_counts(prepared.person_year, prepared.tables, fy,
                                           ikkatsu.make_params(drugs_threshold=20), "17201")
    assert list(again["県 人数"]) == list(report.display_table(expected).data["県 人数"])
    assert list(first["基準"]) == list(again["基準"]) and "秒" in panel.status.value


def test_committee_tables_on_demo_data_have_no_small_counts_or_ids(prepared):
    fy = prepared.fiscal_years[-1]
    ids = prepared.person_year["person_id"]
    flags = ikkatsu.criteria_flags(prepared.person_year, fy, IkkatsuParams(), prepared.tables)
    for muni in ("17201", "17205"):
        strata = ikkatsu.criteria_strata(prepared.person_year, flags)
        t = ikkatsu.suppress_area_table(ikkatsu.criteria_table(strata, prepared.municipalities,
                                                               prepared.districts, muni, fy))
        prof = ikkatsu.suppress_profile(ikkatsu.questionnaire_profile(prepared.person_year, fy, muni,
                                                                      prepared.municipalities))
        fr = ikkatsu.suppress_district_frailty(ikkatsu.district_frailty(prepared.person_year, fy, muni,
                                                                        prepared.districts))
        privacy.assert_no_small_counts(t, ["count", "denominator"])
        privacy.assert_no_small_counts(prof, ["count", "respondents"])
        privacy.assert_no_small_counts(fr, ["count", "respondents"])
        privacy.assert_no_person_ids([t, prof, fr], ids)
        members = ikkatsu.membership(flags, prepared.person_year, muni)
        privacy.assert_no_person_ids(members, ids)


def test_notebook_report_has_no_person_id(prepared, tmp_path):
    """Run the notebook (papermill) on the test data, export HTML without code and check it."""
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "out"
    papermill.execute_notebook(str(repo / "notebooks" / "03_ikkatsu.ipynb"), str(tmp_path / "run.ipynb"),
                               parameters={"muni_code": "17201", "out_dir": str(out),
                                           "cache_dir": os.environ["HSUTILS_CACHE_DIR"]},
                               progress_bar=False, kernel_name="python3")
    nb = nbformat.read(str(tmp_path / "run.ipynb"), as_version=4)
    html, _ = HTMLExporter(exclude_input=True).from_notebook_node(nb)
    ids = prepared.person_year["person_id"]
    privacy.assert_no_person_ids(html, ids)
    assert "confidential/priority_list.csv" in html
    listed = pd.read_csv(out / "confidential" / "priority_list.csv", dtype=str)
    assert len(listed) > 0 and set(listed["被保険者番号"]) <= set(ids)  # the list itself is where ids belong
    counts = {"count", "denominator", "respondents"}
    csvs = sorted((out / "tables").glob("*.csv"))
    assert {"ikkatsu_criteria.csv", "questionnaire_profile.csv"} <= {p.name for p in csvs}
    for path in csvs:
        df = pd.read_csv(path, encoding="utf-8-sig", dtype=str)
        privacy.assert_no_person_ids(df, ids)
        privacy.assert_no_small_counts(df, sorted(counts & set(df.columns)))
    crit = pd.read_csv(out / "tables" / "ikkatsu_criteria.csv", encoding="utf-8-sig", dtype=str)
    assert list(crit.columns[:11]) == ikkatsu.TABLE_COLUMNS


def test_kaigo_levels_chart_and_overview_cannot_be_combined_to_recover_a_level():
    # 認定者 24 of 152 in the overview; levels 要支援1 15 and 要介護5 9. Showing 24 and 15 gives 9 back;
    # the chart's group 要介護3〜5 (= 9) and 要支援1・2 (= 15) likewise.
    overview = pd.DataFrame({"indicator_id": ["kaigo_rate"], "area": ["A町"], "count": [24], "denominator": [152]})
    levels = pd.DataFrame({"area": "A町", "level": [ikkatsu.NO_KAIGO, *ikkatsu.KAIGO_LEVELS],
                           "count": [128, 15, 0, 0, 0, 0, 0, 9]})
    grouped = (levels.assign(level=levels["level"].map(ikkatsu.KAIGO_GROUPS))
               .groupby(["area", "level"], sort=False, as_index=False)["count"].sum())
    plan = privacy.SuppressionPlan()
    for name, df, cols, rels in [("kouki_overview", overview, ["count", "denominator"], []),
                                 ("kaigo_levels_grouped", grouped, ["count"], ikkatsu.kaigo_relations()),
                                 ("kaigo_levels", levels, ["count"], ikkatsu.kaigo_relations(grouped_table="kaigo_levels_grouped"))]:
        plan.add_table(name, df, cols, relations=rels)
        plan.solve()
        plan.publish(name)
    shown = plan.shown("kaigo_levels").set_index("level")["count"]
    assert shown["要介護5"] == "‐" and shown["要支援1"] == "‐" and shown[ikkatsu.NO_KAIGO] == 128
    g = plan.shown("kaigo_levels_grouped").set_index("level")["count"]
    assert g["要介護3〜5"] == "‐" and g["要支援1・2"] == "‐"
    assert plan.shown("kouki_overview")["count"].iloc[0] == 24
    assert plan.audit() == []


def test_criteria_distribution_total_is_the_any_count_of_the_criteria_table():
    criteria = pd.DataFrame({"criterion_id": ["ik_any", "ik_any"], "area": ["A町", "県"],
                             "area_code": ["17461", "reference"], "count": [np.nan, 500], "denominator": [40, 9000]})
    dist = pd.DataFrame({"n_criteria": ["1つのみ", "2つ以上", "合計"], "count": [np.nan, np.nan, 12], "share": 0.0})
    plan = privacy.SuppressionPlan()
    plan.add_table("ikkatsu_criteria", criteria, ["count", "denominator"])
    plan.solve()
    plan.publish("ikkatsu_criteria")
    plan.add_table("criteria_count_distribution", dist, ["count"], ["share"], relations=ikkatsu.distribution_relations("17461"))
    plan.solve()
    assert plan.shown("criteria_count_distribution")["count"].iloc[2] == "‐"   # hidden as in the criteria table


def test_kaigo_district_rows_add_up_to_the_municipality_hand_built():
    # 要介護3〜5: 東 5 (hidden) + 西 20 = 金沢市 25 (shown): 西 must be hidden too, or 25 − 20 = 5 (docs/rules.md §9)
    from hsutils.patterns import ikkatsu as ik
    from hsutils.publish import privacy as pv

    k = pd.DataFrame({"area": ["金沢市", "金沢市", "東", "東", "西", "西", "県", "県"],
                      "level": ["認定なし", "要介護3〜5"] * 4, "count": [100, 25, 40, 5, 60, 20, 900, 300]})
    rels = ik.kaigo_district_relations("g", k, "金沢市", "県")
    plan = pv.SuppressionPlan()
    plan.add_table("g", k, ["count"], relations=rels)
    plan.solve()
    shown = plan.shown("g").set_index(["area", "level"])["count"]
    assert shown[("東", "要介護3〜5")] == pv.SUPPRESSION_MARK and shown[("西", "要介護3〜5")] == pv.SUPPRESSION_MARK
    assert shown[("金沢市", "要介護3〜5")] == 25 and shown[("県", "要介護3〜5")] == 300 and plan.audit() == []
    # districts that do not cover the municipality are refused (kaigo_levels adds 地区不明, §9.1)
    k.loc[(k["area"] == "西") & (k["level"] == "認定なし"), "count"] = 59
    with pytest.raises(ValueError, match="地区不明"):
        ik.kaigo_district_relations("g", k, "金沢市", "県")


def _kaigo_persons(groups) -> pd.DataFrame:
    """後期 persons aged 80 in fy 2024: (muni, district, kaigo level or None, how many)."""
    rows = [(m, d, lvl) for m, d, lvl, n in groups for _ in range(n)]
    py = _persons([(f"P{i:04d}", m, d, "後期", 80) for i, (m, d, _) in enumerate(rows)])
    py["kaigo_certified"] = [lvl is not None for _, _, lvl in rows]
    py["kaigo_level"] = pd.Series([lvl for _, _, lvl in rows], dtype="str")
    return py


def test_persons_without_a_district_make_a_remainder_row_hand_worked():
    """docs/rules.md §9.1. 甲市 要介護3〜5: 東 5 + 西 20 + 地区不明 3 = 28. Without the 地区不明 row
    (and with no relation, as before) 28 − 20 gives 東 + 地区不明 = 8; with it, 東 5 and 地区不明 3
    are hidden (1–9) and their sum 8 < 10 hides the next smallest part, 西 20."""
    py = _kaigo_persons([("17201", "01", None, 40), ("17201", "01", "要介護3", 5),
                         ("17201", "02", None, 60), ("17201", "02", "要介護4", 20),
                         ("17201", "", None, 12), ("17201", "", "要介護5", 3),
                         ("17202", "", None, 50), ("17202", "", "要介護3", 10)])
    k = ikkatsu.kaigo_levels(py, FY, "17201", "甲市", DISTRICTS, "県", grouped=True)
    cnt = k.set_index(["area", "level"])["count"]
    assert list(pd.unique(k["area"])) == ["甲市", "東", "西", "地区不明", "県"]
    assert [cnt[(a, "要介護3〜5")] for a in ["甲市", "東", "西", "地区不明", "県"]] == [28, 5, 20, 3, 38]
    assert [cnt[(a, "認定なし")] for a in ["甲市", "東", "西", "地区不明", "県"]] == [112, 40, 60, 12, 162]
    plan = privacy.SuppressionPlan()
    plan.add_table("g", k, ["count"], relations=ikkatsu.kaigo_district_relations("g", k, "甲市", "県"))
    plan.solve()
    shown = plan.shown("g").set_index(["area", "level"])["count"]
    assert [shown[(a, "要介護3〜5")] for a in ["甲市", "東", "西", "地区不明", "県"]] == [28, MARK, MARK, MARK, 38]
    assert [shown[(a, "認定なし")] for a in ["甲市", "東", "西", "地区不明", "県"]] == [112, 40, 60, 12, 162]
    assert plan.audit() == []
    # the old table (no 地区不明 row, no relation) published 西 20 next to 甲市 28: the audit, given
    # the true relation with the unpublished remainder, finds the hidden sum 東 + 地区不明 = 8
    old = k[k["area"] != "地区不明"].reset_index(drop=True)
    old_shown = old.assign(count=old["count"].where(old["count"] >= 10))
    row = {a: i for i, a in enumerate(old["area"] + "|" + old["level"])}
    rel = [(("old", row["甲市|要介護3〜5"], "count"),
            [("old", row["東|要介護3〜5"], "count"), ("old", row["西|要介護3〜5"], "count"), ("rest", 0, "count")])]
    found = privacy.audit_recoverable({"old": old_shown, "rest": pd.DataFrame({"count": [np.nan]})}, rel)
    assert len(found) == 1 and "合計 8" in found[0]


def test_no_remainder_row_when_everyone_has_a_district_or_nobody_has_one():
    """§9.1: the 地区不明 row appears only when some persons lack a district; a municipality whose
    persons have no district code gets no district rows, and without a master neither (03's
    ungrouped table)."""
    py = _kaigo_persons([("17201", "01", None, 15), ("17201", "02", "要介護1", 12), ("17201", "03", None, 11),
                         ("17202", "", None, 30)])
    k = ikkatsu.kaigo_levels(py, FY, "17201", "甲市", DISTRICTS, "県")
    assert list(pd.unique(k["area"])) == ["甲市", "東", "西", "03", "県"]  # 03: a code only in the data
    assert ikkatsu.kaigo_district_relations("k", k, "甲市", "県")  # adds up: declared
    assert list(pd.unique(ikkatsu.kaigo_levels(py, FY, "17202", "乙町", DISTRICTS, "県")["area"])) == ["乙町", "県"]
    assert list(pd.unique(ikkatsu.kaigo_levels(py, FY, "17201", "甲市", None, "県")["area"])) == ["甲市", "県"]


def test_criteria_table_has_a_remainder_row_for_persons_without_a_district():
    """docs/rules.md §9.1. 甲市 後期 26 = 東 12 + 西 10 + 地区不明 4. Without the 地区不明 row the
    three denominators were all shown and 26 − 12 − 10 gave the 4 persons without a district; with
    it, 地区不明 4 is hidden and so is the next smallest district, 西 10."""
    rows, oral = [], []
    for district, n, n_oral, age in (("01", 12, 5, 80), ("02", 10, 1, 82), ("", 4, 2, 83)):
        rows += [(f"{district or 'Z'}{i:03d}", "17201", district, "後期", age) for i in range(n)]
        oral += [i < n_oral for i in range(n)]
    rows += [(f"C{i:03d}", "17202", "", "後期", 81) for i in range(30)]
    oral += [i < 4 for i in range(30)]
    py = _persons(rows)
    flags = pd.DataFrame(False, index=py.index, columns=list(ikkatsu.CRITERIA_IDS) + [ikkatsu.ANY_ID])
    flags["ik_oral"] = flags[ikkatsu.ANY_ID] = oral
    t = ikkatsu.criteria_table(ikkatsu.criteria_strata(py, flags), MUNIS, DISTRICTS, "17201", FY,
                               reference_label="石川県")
    o = t[t["criterion_id"] == "ik_oral"]
    assert list(o["area"]) == ["甲市", "東", "西", "地区不明", "石川県"]
    assert list(o["area_code"]) == ["17201", "17201:01", "17201:02", "17201:", "reference"]
    assert list(o["count"]) == [8, 5, 1, 2, 12] and list(o["denominator"]) == [26, 12, 10, 4, 56]
    assert o["rate"].iloc[3] == pytest.approx(50.0)  # 2 / 4
    shown = ikkatsu.suppress_area_table(t, threshold=10)
    so = shown[shown["criterion_id"] == "ik_oral"]
    assert list(so["denominator"]) == [26, 12, MARK, MARK, 56]
    assert list(so["count"]) == [MARK, MARK, MARK, MARK, 12]
    # the published table, under the true relation 甲市 = 東 + 西 + 地区不明, gives nothing back
    rel = [(("t", 0, c), [("t", 1, c), ("t", 2, c), ("t", 3, c)]) for c in ("count", "denominator")]
    assert privacy.audit_recoverable({"t": so.reset_index(drop=True)}, rel) == []


def test_district_frailty_keeps_the_persons_without_a_district():
    py = _questionnaire_persons()
    py.loc[py["person_id"] == "P3", "district_code"] = ""
    d = ikkatsu.district_frailty(py, FY, "17201", DISTRICTS, ["口腔機能", "運動・転倒"])
    oral = d[d["item_id"] == "口腔機能"]
    assert list(oral["area"]) == ["東", "西", "地区不明", "市町村全体"]
    assert oral["area_code"].iloc[2] == "17201:"
    parts, total = oral.iloc[:3], oral.iloc[3]
    assert parts["respondents"].sum() == total["respondents"] and parts["count"].sum() == total["count"]
    shown = ikkatsu.suppress_district_frailty(d, threshold=1)
    assert "地区不明" not in set(ikkatsu.top_districts(shown)["area"])  # not a place for a 通いの場

"""健診未受診者の分類 (hsutils.patterns.nonparticipants, docs/rules.md §14) on hand-built fixtures.

Each test states the hand-worked expected value. Fiscal year 2024 = 202404–202503.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hsutils.patterns import nonparticipants as npt
from hsutils.rules import programs
from hsutils.publish import privacy
from hsutils.core.errors import ParameterError
from hsutils.core.schema import age_band

FY = 2024
MUNI = "17201"


def person(pid, fy=FY, age=60, sex=1, kenshin=False, insurance="国保", full_year=True, excluded=False,
           muni=MUNI, district="01", ref=False, guidance=False):
    return {"person_id": pid, "fy": fy, "muni_code": muni, "district_code": district, "sex": sex, "age": age,
            "insurance": insurance, "full_year": full_year, "excluded_statutory": excluded,
            "has_kenshin": kenshin, "ref_any": ref, "guidance_target": guidance}


def frame(rows):
    py = pd.DataFrame(rows)
    py["age_band"] = age_band(py["age"].to_numpy())
    return py


def claim(pid, ym, **flags):
    row = {"person_id": pid, "muni_code": MUNI, "ym": ym, "cost_outpatient": 1000.0}
    row.update({f: flags.get(f, False) for f in ("diabetes", "hypertension", "dyslipidemia")})
    if flags.get("dental_only"):
        row["cost_outpatient"] = 0.0
        row["cost_dental"] = 500.0
    return row


def test_population_is_the_hotei_target_at_its_age_and_enrolment_boundaries():
    py = frame([person("a39", age=39), person("a40", age=40), person("a74", age=74), person("a75", age=75),
                person("part", full_year=False), person("excl", excluded=True), person("kouki", insurance="後期"),
                person("other_year", fy=FY - 1)])
    f = npt.classify(py, None, FY)
    # 40 and 74 at fiscal-year end are in; 39, 75, part-year, statutory exclusion, 後期, other year are out
    assert sorted(f["person_id"]) == ["a40", "a74"]


def test_care_segments_at_the_lookback_boundaries():
    py = frame([person(p) for p in ("first", "before", "last", "after", "dm", "other", "dental", "none", "ex")]
               + [person("ex2", kenshin=True)])
    claims = pd.DataFrame([
        claim("first", 202404, hypertension=True),   # first month of the 12-month window: in
        claim("before", 202403, hypertension=True),  # one month before: out -> no care at all
        claim("last", 202503, dyslipidemia=True),    # last month (March): in
        claim("after", 202504, diabetes=True),       # next fiscal year: out
        claim("dm", 202409, diabetes=True),
        claim("other", 202410),                      # a claim without lifestyle disease
        claim("dental", 202411, dental_only=True),   # dental only counts as care use (§14.2)
        claim("ex2", 202410, diabetes=True),         # a participant stays 受診 whatever the claims
    ])
    f = npt.classify(py, claims, FY).set_index("person_id")["care"]
    assert f["first"] == npt.SEG_TREATED
    assert f["before"] == npt.SEG_NO_CARE
    assert f["last"] == npt.SEG_TREATED
    assert f["after"] == npt.SEG_NO_CARE
    assert f["dm"] == npt.SEG_TREATED
    assert f["other"] == npt.SEG_OTHER_CARE
    assert f["dental"] == npt.SEG_OTHER_CARE
    assert f["none"] == npt.SEG_NO_CARE
    assert f["ex2"] == npt.PARTICIPANT


def test_longer_lookback_reaches_the_earlier_claim():
    py = frame([person("before")])
    claims = pd.DataFrame([claim("before", 202403, hypertension=True)])
    # 13 months ending 202503 start at 202403
    f = npt.classify(py, claims, FY, npt.NonparticipantParams(lookback_months=13))
    assert f["care"].iloc[0] == npt.SEG_TREATED


def test_claims_in_window_months_and_last_month():
    claims = pd.DataFrame([claim("p", 202403), claim("p", 202404, diabetes=True), claim("p", 202503),
                           claim("q", 202504)])
    w = programs.claims_in_window(claims, 202503, 12).set_index("person_id")
    assert list(w.index) == ["p"]  # q's only claim is after the window
    assert bool(w.loc["p", "diabetes"]) and int(w.loc["p", "last_ym"]) == 202503
    with pytest.raises(ParameterError):
        programs.claims_in_window(claims, 202503, 0)


def test_history_categories_over_years():
    rows = [
        # participated two years ago, not last year, not this year -> 不定期
        person("irr", fy=2022, kenshin=True), person("irr", fy=2023), person("irr"),
        # target in both past years, never participated -> 連続未受診
        person("cont", fy=2022), person("cont", fy=2023), person("cont"),
        # 40 this year (39 last year: not a target) -> 40歳到達
        person("new40", fy=2023, age=39), person("new40", age=40),
        # enrolled last year only part of the year (not a target), 55 now -> その他の新たな対象者
        person("moved", fy=2023, age=54, full_year=False), person("moved", age=55),
        # participated three years ago only: outside a 2-year history -> 連続未受診 (target in 2023)
        person("old", fy=2021, kenshin=True), person("old", fy=2022 - 0, age=60), person("old"),
        # participated last year at another municipality: a new history here (another 保険者)
        person("elsewhere", fy=2023, kenshin=True, muni="17202"), person("elsewhere"),
        # participant this year: no history category
        person("part", fy=2023), person("part", kenshin=True),
    ]
    f = npt.classify(frame(rows), None, FY).set_index("person_id")
    assert f.loc["irr", "history"] == npt.HIST_IRREGULAR and int(f.loc["irr", "last_kenshin_fy"]) == 2022
    assert f.loc["cont", "history"] == npt.HIST_CONTINUOUS
    assert f.loc["new40", "history"] == npt.HIST_NEW40
    assert f.loc["moved", "history"] == npt.HIST_NEW_OTHER
    assert f.loc["old", "history"] == npt.HIST_CONTINUOUS
    assert f.loc["elsewhere", "history"] == npt.HIST_NEW_OTHER
    assert pd.isna(f.loc["part", "history"])
    # with a 3-year history "old" becomes 不定期
    f3 = npt.classify(frame(rows), None, FY, npt.NonparticipantParams(history_years=3)).set_index("person_id")
    assert f3.loc["old", "history"] == npt.HIST_IRREGULAR


def test_history_years_available():
    assert npt.history_years_available([2022, 2023, 2024], 2024, 2) == 2
    assert npt.history_years_available([2022, 2023, 2024], 2023, 2) == 1
    assert npt.history_years_available([2024], 2024, 2) == 0


def test_needed_for_target_arithmetic():
    # 60 % of 1,000 = 600 exactly; 400 examinees need 200 more
    assert npt.needed_for_target([1000], [400], 60.0).tolist() == [200]
    # 60 % of 1,001 = 600.6 -> 601 examinees; 600 have come -> 1 more
    assert npt.needed_for_target([1001], [600], 60).tolist() == [1]
    # already above the target -> 0, never negative
    assert npt.needed_for_target([10], [7], 60).tolist() == [0]
    # 60 % of 5 = 3 exactly (no floating-point 3.0000000004 -> 4)
    assert npt.needed_for_target([5], [0], 60).tolist() == [3]
    # 43.9 % of 1,000 = 439
    assert npt.needed_for_target([1000], [0], 43.9).tolist() == [439]


def _whatif_fixture():
    # 10 targets: 4 participants, 3 treated (a), 2 other care (b), 1 nothing (c)
    rows = [person(f"p{i}", kenshin=True) for i in range(4)] + [person(f"t{i}") for i in range(3)] \
        + [person(f"o{i}") for i in range(2)] + [person("n0")]
    claims = pd.DataFrame([claim(f"t{i}", 202406, diabetes=True) for i in range(3)]
                          + [claim(f"o{i}", 202406) for i in range(2)])
    return npt.classify(frame(rows), claims, FY)


def test_whatif_rate_and_gap():
    f = _whatif_fixture()
    t = npt.whatif_table(f, {npt.SEG_TREATED: 1 / 3, npt.SEG_NO_CARE: 1.0}, 60.0).set_index("area_code")
    r = t.loc[MUNI]
    assert (r["target"], r["examinees"]) == (10, 4)
    assert r["rate"] == pytest.approx(40.0)
    assert r["needed"] == 2                       # ⌈6.0⌉ − 4
    assert r["added"] == pytest.approx(2.0)       # 3 × 1/3 + 1 × 1
    assert r["rate_if"] == pytest.approx(60.0)    # (4 + 2) / 10
    assert r["still_needed"] == pytest.approx(0.0)
    # the 計 row is the sum of the municipalities (one here)
    assert t.loc[npt.TOTAL, "target"] == 10
    with pytest.raises(ParameterError):
        npt.whatif_table(f, {npt.SEG_TREATED: 1.5}, 60)


def test_segment_counts_add_up_and_relations_suppress_small_cells():
    f = _whatif_fixture()
    c = npt.segment_counts(f)
    tot = c[(c["axis"] == "性別") & (c["category"] == npt.TOTAL)].iloc[0]
    assert (tot["target"], tot["examinees"], tot["nonparticipants"]) == (10, 4, 6)
    assert (tot["seg_treated"], tot["seg_other_care"], tot["seg_no_care"]) == (3, 2, 1)
    # nobody has a past year in the fixture: all 6 are その他の新たな対象者 (age 60)
    assert tot["hist_new_other"] == 6
    plan = privacy.SuppressionPlan(10)
    plan.add_table("segments", c, npt.COUNT_COLUMNS, relations=npt.segment_relations(c))
    plan.solve()
    shown = plan.shown("segments")
    # 10 targets is shown; 4 examinees and 6 non-participants are 1–9 -> "‐"
    row = shown[(shown["axis"] == "性別") & (shown["category"] == npt.TOTAL)].iloc[0]
    assert row["target"] == 10 and row["examinees"] == privacy.SUPPRESSION_MARK
    assert row["nonparticipants"] == privacy.SUPPRESSION_MARK
    assert privacy.audit_recoverable({"segments": c.assign(**{k: pd.to_numeric(shown[k], errors="coerce")
                                                              for k in npt.COUNT_COLUMNS})},
                                     [], 10) == []


def test_comparison_and_ever_rate():
    rows = [person("a", fy=2023, kenshin=True), person("a"),   # ever participated (last year)
            person("b", kenshin=True), person("c")]
    f = npt.classify(frame(rows), None, FY)
    t = npt.comparison_table(f).set_index(["indicator_id", "area_code"])
    assert t.loc[("kenshin_rate", MUNI), "value"] == pytest.approx(100 / 3)
    assert t.loc[("ever_rate", MUNI), "numerator"] == 2   # b this year, a last year
    assert t.loc[("share_no_care", MUNI), "numerator"] == 2  # a and c: no claims at all


def test_priority_lists():
    rows = [person("risk_none", fy=2023, kenshin=True, ref=True), person("risk_none"),  # (c) + past risk -> 1
            person("none"),                                                          # (c) -> 2
            person("irr_risk", fy=2023, kenshin=True, guidance=True), person("irr_risk"),  # 不定期 + risk -> 3
            person("irr", fy=2023, kenshin=True), person("irr"),                     # 不定期 -> 4
            person("treated"), person("other"), person("part", kenshin=True)]
    claims = pd.DataFrame([claim("irr_risk", 202406), claim("irr", 202406), claim("treated", 202406, diabetes=True),
                           claim("other", 202406)])
    f = npt.classify(frame(rows), claims, FY)
    rem = npt.reminder_list(f)
    assert rem.set_index("被保険者番号")["優先順位"].to_dict() == {"risk_none": 1, "none": 2, "irr_risk": 3, "irr": 4}
    assert rem["優先順位"].is_monotonic_increasing
    rec = npt.data_receipt_list(f)
    assert rec["被保険者番号"].tolist() == ["treated"] and rec["治療中の生活習慣病"].iloc[0] == "糖尿病"


def test_params_are_checked():
    with pytest.raises(ParameterError):
        npt.NonparticipantParams(lookback_months=0)
    with pytest.raises(ParameterError):
        npt.NonparticipantParams(target_rate=0)
    assert "12か月" in npt.NonparticipantParams().text()


def test_composition_frame_has_every_group_and_category():
    f = _whatif_fixture()
    comp = npt.composition_frame(f)
    assert comp["count"].sum() == 10
    assert set(comp["category"]) == {npt.PARTICIPANT, *npt.CARE_SEGMENTS}
    assert np.all(comp.groupby("group")["count"].sum().reindex(["男 60-64"]).to_numpy() == [10])


def test_committee_tables_hold_no_person_ids_and_the_lists_do():
    f = _whatif_fixture()
    committee = [npt.segment_counts(f), npt.whatif_table(f, {npt.SEG_TREATED: 0.3}, 60), npt.comparison_table(f)]
    ids = f["person_id"].tolist()
    for table in committee:
        privacy.assert_no_person_ids(table, ids)  # raises when an id appears
    assert set(npt.reminder_list(f)["被保険者番号"]) | set(npt.data_receipt_list(f)["被保険者番号"]) <= set(ids)
    assert len(npt.data_receipt_list(f)) == 3  # the three treated non-participants


def test_area_rows_follow_the_one_area_model():
    """`_in_area` asks `hsutils.analysis.areas` (issue 14): a prefecture in every code form is the
    whole prefecture (the 6-digit "170003" used to select nothing), a municipality may carry its
    check digit, a list is a reference area's members, None is everything."""
    from hsutils.patterns.nonparticipants import _in_area

    py = pd.DataFrame({"muni_code": ["17201", "17202", "17201", "18201"]})
    assert _in_area(py, "17").tolist() == [True, True, True, False]
    assert _in_area(py, "170003").tolist() == [True, True, True, False]
    assert _in_area(py, "172014").tolist() == [True, False, True, False]
    assert _in_area(py, ["17202", "18201"]).tolist() == [False, True, False, True]
    assert _in_area(py, None).tolist() == [True] * 4


def test_trend_table_reuses_the_classified_year():
    """trend_table with the run's year already classified (the notebook's `all_rows`) gives the same
    table; the classified frame is read, not changed."""
    rows = [person("a", fy=2023, kenshin=True), person("a"), person("b", kenshin=True), person("c"),
            person("b", fy=2023), person("c", fy=2023, kenshin=True)]
    py = frame(rows)
    known = npt.classify(py, None, FY)
    before = known.copy()
    areas = {"市": MUNI}
    plain = npt.trend_table(py, None, [FY - 1, FY], areas)
    reused = npt.trend_table(py, None, [FY - 1, FY], areas, classified={FY: known})
    pd.testing.assert_frame_equal(plain, reused)
    pd.testing.assert_frame_equal(known, before)
    this = plain[(plain["fy"] == FY) & (plain["series"] == "受診率")]
    assert this[["numerator", "denominator"]].values.tolist() == [[1, 3]]  # b of a, b, c


# ---------------------------------------------------------------------------------------------
# per-municipality counts (notebook 08 reads only its own municipality's rows, docs/design.md §8.1)


def _two_town_cache(tmp_path):
    """17201: A (2023 受診, 2024 未受診 without claims), B (2024 受診); 17324: C (2023 未受診, 2024 受診);
    M moves 17201 (2023 受診) → 17324 (2024 未受診, a diabetes claim in 202410). 17999 is in the
    master but has no rows."""
    from hsutils.analysis import pipeline

    rows = [person("A", fy=FY - 1, kenshin=True), person("A"), person("B", kenshin=True),
            person("C", fy=FY - 1, muni="17324"), person("C", kenshin=True, muni="17324"),
            person("M", fy=FY - 1, kenshin=True), person("M", muni="17324")]
    py = frame(rows)
    claims = pd.DataFrame([claim("M", 202410, diabetes=True)])
    pipeline.write_partitioned(py, tmp_path, {"enrollment": py[["person_id", "fy", "muni_code"]],
                                              "claims_monthly": claims})
    (tmp_path / "meta.json").write_text('{"data_hash": "x", "cache_version": "6", "fiscal_years": [2023, 2024]}',
                                        encoding="utf-8")
    pd.DataFrame({"muni_code": ["17201", "17324", "17999"], "name": ["金沢市", "川北町", "空町"],
                  "pref_code": "17"}).to_parquet(tmp_path / "municipalities.parquet")
    for name in ("strata", "districts", "import_summary", "exclusions"):
        pd.DataFrame({"x": [1]}).to_parquet(tmp_path / f"{name}.parquet")
    return py, claims


def test_municipal_counts_from_each_municipality_with_a_mover(tmp_path, monkeypatch):
    """Hand-worked: 2023 17201 A, M 受診 (2 of 2, ever 2); 17324 C 未受診, no care (ever 0).
    2024 17201 A no care (ever 1: 受診 in 2023), B 受診; 17324 C 受診, M 治療中 — at 17324 M has no
    受診 history (the history is the same 保険者's), so ever 1 of 2. 17999 has no rows: no row.
    The same counts as classifying the whole prefecture at once; the second call reads the saved table."""
    from hsutils.analysis import pipeline

    py, claims = _two_town_cache(tmp_path)
    prepared = pipeline.load_prepared(tmp_path, with_tables=npt.TABLES, munis=["17324"])
    assert sorted(prepared.person_year["person_id"]) == ["C", "C", "M"]  # the run's own rows only
    got = npt.municipal_counts(prepared)
    assert got.columns.tolist() == ["fy", "muni_code", *npt.MUNI_COUNT_COLUMNS]
    # fy, muni, target, examinees, treated, other care, no care, ever
    assert got.values.tolist() == [[2023, "17201", 2, 2, 0, 0, 0, 2], [2024, "17201", 2, 1, 0, 0, 1, 2],
                                   [2023, "17324", 1, 0, 0, 0, 1, 0], [2024, "17324", 2, 1, 1, 0, 0, 1]]
    for fy in (FY - 1, FY):
        whole = npt.muni_counts(npt.classify(py, claims, fy))
        mine = got[got["fy"] == fy].drop(columns="fy").reset_index(drop=True)
        assert mine.values.tolist() == whole.values.tolist()
    monkeypatch.setattr(npt, "classify", lambda *a, **k: pytest.fail("classified again"))
    pd.testing.assert_frame_equal(npt.municipal_counts(prepared), got)
    # one saved table for these parameters
    assert len(list((tmp_path / "derived").glob("nonparticipant_counts_*.parquet"))) == 1


def test_municipal_counts_of_a_run_holding_every_row_equal_the_partitions_counts(tmp_path, monkeypatch):
    """A prefecture run holds every municipality's rows: it classifies them at once (no partition read
    again) and saves exactly the table the municipal runs count partition by partition (mover M
    included; rows by municipality, then year), so the saved table does not depend on which run made it."""
    from hsutils.analysis import pipeline

    _two_town_cache(tmp_path)
    by_parts = npt.municipal_counts(pipeline.load_prepared(tmp_path, with_tables=npt.TABLES, munis=["17324"]))
    for f in (tmp_path / "derived").glob("nonparticipant_counts_*"):
        f.unlink()
    monkeypatch.setattr(pipeline, "each_municipality", lambda *a, **k: pytest.fail("partitions read again"))
    at_once = npt.municipal_counts(pipeline.load_prepared(tmp_path, with_tables=npt.TABLES))
    pd.testing.assert_frame_equal(at_once, by_parts, check_exact=True)
    assert at_once[["fy", "muni_code"]].values.tolist() == [[2023, "17201"], [2024, "17201"], [2023, "17324"],
                                                          [2024, "17324"]]


def test_tables_from_counts_equal_the_tables_from_rows(tmp_path):
    """whatif_table, comparison_table and the trends from the per-municipality counts are the tables
    of the classified rows of the whole prefecture (values, dtypes, order); a fiscal year not in the
    data counts 0 of 0 (as classifying it gives no rows)."""
    from hsutils.analysis import pipeline

    py, claims = _two_town_cache(tmp_path)
    prepared = pipeline.load_prepared(tmp_path, with_tables=npt.TABLES, munis=["17201"])
    counts = npt.municipal_counts(prepared)
    this = counts[counts["fy"] == FY]
    rows = npt.classify(py, claims, FY)
    shares = {npt.SEG_TREATED: 0.5, npt.SEG_NO_CARE: 1.0}
    pd.testing.assert_frame_equal(npt.whatif_table(this, shares, 60.0), npt.whatif_table(rows, shares, 60.0))
    w = npt.whatif_table(this, shares, 60.0).set_index("area_code")
    assert w.loc["計", ["target", "examinees", "needed"]].tolist() == [4, 2, 1]  # ⌈4 × 0.6⌉ − 2
    assert w.loc["17324", "added"] == 0.5  # M (治療中) × 0.5
    pd.testing.assert_frame_equal(npt.comparison_table(this), npt.comparison_table(rows))
    areas_ = {"川北町": "17324", "県": None}
    years = [FY - 2, FY - 1, FY]  # 2022 is not in the data
    for params in (npt.NonparticipantParams(), npt.NonparticipantParams(history_years=1)):
        c = npt.municipal_counts(prepared, params)
        from_counts = npt.trend_from_counts(c, years, areas_, prepared.fiscal_years, params)
        pd.testing.assert_frame_equal(from_counts, npt.trend_table(py, claims, years, areas_, params))
    t = from_counts.set_index(["area", "fy", "series"])
    assert t.loc[("川北町", FY - 2, "受診率"), ["numerator", "denominator"]].tolist() == [0, 0]
    assert t.loc[("県", FY, "受診率"), ["numerator", "denominator"]].tolist() == [2, 4]
    assert t.loc[("県", FY, "1回以上受診（過去の年度を含む）"), ["numerator", "denominator"]].tolist() == [3, 4]
    assert ("県", FY - 1, "1回以上受診（過去の年度を含む）") not in t.index  # no history year before 2023

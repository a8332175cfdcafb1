"""Look-back completeness (docs/hotei.md §7): claims that start mid-way through the look-back.

Claims start in April 2021; fiscal years 2022–2024. The 36-month look-back of 治療中断 reaches
back before the claims for 2022 (24 months available to March 2023) and 2023 (36), so every
year is judged with 24 months.
"""
import numpy as np
import pandas as pd
import pytest

from hsutils.rules import programs

FLAGS = programs.CLAIM_FLAGS


def _claims(rows):
    out = []
    for pid, ym, dm in rows:
        r = {"person_id": pid, "muni_code": "17201", "ym": ym, "cost_inpatient": 0.0, "cost_outpatient": 1000.0,
             "cost_dental": 0.0, "cost_pharmacy": 0.0, "n_drugs": 0, "n_institutions": 1}
        r.update({f: False for f in FLAGS})
        r["diabetes"] = dm
        out.append(r)
    df = pd.DataFrame(out)
    df["person_id"] = df["person_id"].astype("str")
    return df


@pytest.fixture
def claims():
    return _claims([
        ("first", 202104, False),   # the first month of the claims
        ("X", 202105, True),        # diabetes claims only in May 2021, never again
        ("Y", 202205, True),        # only in May 2022
        ("Z", 202409, True),        # in September 2024: 治療中断 at the end of FY2024 (window Oct–Mar)
    ])


def test_fiscal_year_of_month_at_the_april_boundary():
    """The one fiscal-year rule of YYYYMM (docs/hotei.md §7): April starts the year, March ends it;
    the same value as the remainder-and-choice form it replaced, for every integer."""
    from hsutils.inputs.lookback import fiscal_year_of_month

    assert fiscal_year_of_month([202403, 202404, 202412, 202501, 202503, 202504]).tolist() == [
        2023, 2024, 2024, 2024, 2024, 2025]
    assert fiscal_year_of_month(np.array([200001, 199912])).dtype == np.int64
    every = np.arange(-1000, 300000, dtype=np.int64)  # invalid months too (00, 13, 99)
    assert (fiscal_year_of_month(every) == np.where(every % 100 >= 4, every // 100, every // 100 - 1)).all()


def test_claims_history_per_fiscal_year(claims):
    h = programs.claims_history(claims, [2024, 2022, 2023])
    assert h["fy"].tolist() == [2022, 2023, 2024]
    assert h["months_to_fy_end"].tolist() == [24, 36, 48]     # 202104 … 202303 = 24 months
    assert h["months_before_fy"].tolist() == [12, 24, 36]
    assert int(h["first_ym"].iloc[0]) == 202104


def test_allowed_lookback_is_that_of_the_earliest_year(claims):
    assert programs.allowed_lookback(claims, [2022, 2023, 2024], 36, 6) == 24
    assert programs.allowed_lookback(claims, [2023, 2024], 36, 6) == 36      # enough history
    assert programs.allowed_lookback(claims, [2021], 36, 6) == 12
    assert programs.allowed_lookback(claims, [2021], 36, 18) == 18           # never below the window
    assert programs.allowed_lookback(None, [2022], 36, 6) == 36              # no claims: nothing to shorten
    assert programs.allowed_lookback(claims, [2019], 36, 6) == 36            # claims start after the year


def test_same_window_every_year_removes_the_artefact(claims):
    """X (claims in May 2021 only) is 治療中断 in FY2023 with 36 months but would be 未治療 in FY2022
    only because the data do not go back far enough; with 24 months for every year X is 治療中断 in
    FY2022 (May 2021 is within Apr 2021–Mar 2023) and 未治療 from FY2023 on, like anyone whose last
    claim is two years old."""
    def status(fy, lookback):
        s = programs.treatment_status(claims, "diabetes", fy=fy, lookback_months=lookback)
        return dict(zip(s["person_id"], s["status"]))

    full = {fy: status(fy, 36) for fy in (2022, 2023, 2024)}
    assert [full[f]["X"] for f in (2022, 2023, 2024)] == ["治療中断", "治療中断", "未治療"]
    lb = programs.allowed_lookback(claims, [2022, 2023, 2024], 36, 6)
    same = {fy: status(fy, lb) for fy in (2022, 2023, 2024)}
    assert [same[f]["X"] for f in (2022, 2023, 2024)] == ["治療中断", "未治療", "未治療"]
    assert [same[f]["Y"] for f in (2022, 2023, 2024)] == ["治療中断", "治療中断", "未治療"]
    assert same[2024]["Z"] == "治療中断"


def test_lookback_note_states_the_window(claims):
    h = programs.claims_history(claims, [2022, 2023, 2024])
    assert programs.lookback_note(36, 24, h) == ("レセプトは2021年4月から。レセプトのさかのぼり期間は、最初の年度にそろえて"
                                                  "全年度 24か月（既定 36か月）")
    assert programs.lookback_note(36, 36) == "レセプトのさかのぼり期間 36か月（全年度同じ）"


def test_check_reports_months_of_history(tmp_path):
    from hsutils.inputs import io

    d = tmp_path / "data"
    d.mkdir()
    pd.DataFrame({"被保険者番号": ["1", "2"], "年度": [2022, 2023], "市町村コード": ["17201", "17201"],
                  "性別": [1, 2], "年齢": [50, 60], "保険種別": ["国保", "国保"]}).to_csv(d / "enrollment.csv", index=False)
    c = _claims([("1", 202104, True), ("2", 202304, False)])
    c.to_csv(d / "claims_monthly.csv", index=False)
    text = io.check_folder(d)
    assert "2022年度 24か月（年度前 12か月）、2023年度 36か月（年度前 24か月）" in text
    assert "全年度を 24か月でそろえて判定します" in text
    # 2022 has 12 months before it, 2023 24: new dialysis can be judged in both (docs/hotei.md §7.4)
    assert "新規人工透析" not in text
    c = _claims([("1", 202105, True), ("2", 202304, False)])  # 11 months before 2022
    c.to_csv(d / "claims_monthly.csv", index=False)
    assert ("注意: 2022年度は年度開始前のレセプトが12か月未満のため、新規人工透析は判定不能（前年度のレセプトなし）とします"
            in io.check_folder(d))


def test_single_year_extraction_keeps_the_window_of_its_own_year(claims):
    """docs/hotei.md §7.2: the years one figure shows decide its window. Trends (2022–2024) use
    the 24 months of FY2022; a FY2024 list uses the 36 months FY2024 allows, so it does not depend
    on which older years are in the input."""
    from types import SimpleNamespace

    from hsutils.patterns import nephropathy as nep

    prepared = SimpleNamespace(tables={"claims_monthly": claims}, fiscal_years=[2022, 2023, 2024])
    p = programs.NephropathyParams()
    trend, trend_note = nep.with_data_lookback(p, prepared)
    assert trend.lookback_months == 24 and "最初の年度にそろえて全年度 24か月" in trend_note
    y24, note24 = nep.with_data_lookback(p, prepared, [2024])
    assert (y24.lookback_months, note24) == (36, "レセプトは2021年4月から。レセプトのさかのぼり期間 36か月")
    assert nep.with_data_lookback(p, prepared, [2023])[0].lookback_months == 36   # exactly 36 months to 2024-03
    y22, note22 = nep.with_data_lookback(p, prepared, [2022])
    assert y22.lookback_months == 24
    assert note22.endswith("レセプトのさかのぼり期間 24か月（既定 36か月。この年度までのレセプトの長さによる）")
    later = claims[claims["ym"] > 202104]                                          # claims from 2021-05
    assert programs.allowed_lookback(later, [2023], 36, 6) == 35                   # one month short
    # Y (a diabetes claim in May 2022 only) is 治療中断 in the FY2024 list (Apr 2022 – Mar 2025 look-back)
    # but 未治療 in the trend's FY2024 point (24 months: Apr 2023 – Mar 2025)
    def status(lookback):
        s = programs.treatment_status(claims, "diabetes", fy=2024, lookback_months=lookback)
        return dict(zip(s["person_id"], s["status"]))["Y"]

    assert (status(y24.lookback_months), status(trend.lookback_months)) == ("治療中断", "未治療")


def _kouki_rows(pids, fys):
    """後期高齢者 aged 80 of 17201 with a checkup every year (so that 健康状態不明者 stays out of
    the way) and no measurements: only the claims decide their criteria."""
    nan = float("nan")
    return pd.DataFrame([{"person_id": p, "fy": fy, "muni_code": "17201", "district_code": "", "sex": 1, "age": 80,
                          "age_band": "80-84", "insurance": "後期", "has_kenshin": True, "bmi": nan, "hba1c": nan,
                          "sbp": nan, "dbp": nan, "egfr": nan, "urine_protein": nan, "max_drugs": nan,
                          "last_claim_ym": nan} for fy in fys for p in pids])


def test_ikkatsu_priority_list_keeps_the_window_of_its_own_year():
    """docs/hotei.md §7.2 for notebook 03. Claims start in April 2021; W has one diabetes claim in
    April 2021, Y one in May 2022. The criteria table shows 2022–2024 together (24 months each);
    the priority list of one year takes the months that year's claims allow, up to 36:

    - FY2023: 2021-04 … 2024-03 is exactly 36 months; W's claim is the first month of that window
      (2024-03 − 2021-04 = 35 months < 36): 治療中断 in the list, 未治療 in the table (35 ≥ 24).
    - FY2024: 36 months, 2022-04 … 2025-03: Y (34 months before the end) 治療中断 in the list, not in
      the table (34 ≥ 24); W (47) in neither.
    - FY2022: 24 months is all the data hold — the table's window: its flags are used as they are.
    - Claims from May 2021 (W's claim gone): FY2023 allows 35 months, one short of 36."""
    from hsutils.patterns import ikkatsu

    claims = _claims([("W", 202104, True), ("Y", 202205, True)])
    py = _kouki_rows(["W", "Y"], [2022, 2023, 2024])
    tables = {"claims_monthly": claims}
    params = ikkatsu.make_params()

    def interrupted(flags):
        return dict(zip(py.loc[flags.index, "person_id"], flags["ik_interruption"]))

    def listed(fy, flags):
        plist = ikkatsu.priority_list(py, flags, fy, "17201", params)
        return {pid: "治療中断" in crit for pid, crit in zip(plist["person_id"], plist["criteria"])}

    table = {fy: programs.ikkatsu_flags(py, claims, None, None, fy, params) for fy in (2022, 2023, 2024)}
    assert ikkatsu.lookback_window(params, claims, [2022, 2023, 2024])[0] == 24
    assert interrupted(table[2023]) == {"W": False, "Y": True}
    assert interrupted(table[2024]) == {"W": False, "Y": False}

    f23, note23 = ikkatsu.list_flags(py, tables, 2023, params, table[2023], "17201")
    assert interrupted(f23) == {"W": True, "Y": True}
    assert note23 == "レセプトは2021年4月から。レセプトのさかのぼり期間 36か月"
    assert listed(2023, f23) == {"W": True, "Y": True}
    f24, note24 = ikkatsu.list_flags(py, tables, 2024, params, table[2024], "17201")
    assert interrupted(f24) == {"W": False, "Y": True}
    assert listed(2024, f24) == {"Y": True}                       # W meets no criterion in 2024
    assert ikkatsu.priority_summary(ikkatsu.priority_list(py, f24, 2024, "17201", params))["count"].tolist() == [1, 0]

    f22, note22 = ikkatsu.list_flags(py, tables, 2022, params, table[2022], "17201")
    assert f22 is table[2022]                                     # same window: nothing recomputed
    assert note22.endswith("レセプトのさかのぼり期間 24か月（既定 36か月。この年度までのレセプトの長さによる）")

    later = _claims([("first", 202105, False), ("Y", 202205, True)])
    assert ikkatsu.lookback_window(params, later, [2023]) == (
        35, "レセプトは2021年5月から。レセプトのさかのぼり期間 35か月（既定 36か月。この年度までのレセプトの長さによる）")


# ---------------------------------------------------------------------------------------------
# 新規人工透析 (docs/hotei.md §7.4): a year with fewer than 12 months of claims before it is 判定不能
# ---------------------------------------------------------------------------------------------
def _dialysis_tables(first_ym: int | None):
    """Three 国保 persons aged 60–62 in FY 2022 and 2023; claims from May 2022 (11 months before FY 2023).
    Person 1: dialysis 2022-05 and 2023-04 (11 months apart: not new); 2: first dialysis 2023-05 (new);
    3: a claim without dialysis. `first_ym`: the data's first month (a partition of longer data)."""
    from hsutils.core.schema import TABLES

    enr = pd.DataFrame({"person_id": ["1", "2", "3"] * 2, "fy": [2022] * 3 + [2023] * 3, "muni_code": "17201",
                        "sex": [1, 2, 1] * 2, "age": [60, 61, 62] * 2, "insurance": "国保"})
    c = pd.DataFrame({"person_id": ["1", "1", "2", "3"], "ym": [202205, 202304, 202305, 202206],
                      "dialysis": [True, True, True, False], "muni_code": "17201"})
    if first_ym is not None:
        c.attrs["first_ym"] = first_ym
    return {"enrollment": enr, "kenshin": pd.DataFrame(columns=TABLES["kenshin"].names), "claims_monthly": c}


def test_new_dialysis_is_na_in_the_cache_and_leaves_the_indicators_denominator():
    from hsutils.analysis import indicators, pipeline

    # 11 months before FY 2023 (and none before FY 2022): both years unknown, for persons without dialysis too
    py, _ = pipeline.build_person_year(_dialysis_tables(None))
    assert str(py["new_dialysis"].dtype) == "boolean" and py["new_dialysis"].isna().all()
    num, den = indicators.indicator_flags(py, ["new_dialysis"])["new_dialysis"]
    assert not den.any() and not num.any()  # no stratum: no rate is published for these years
    # the data start in April 2022 (12 months before FY 2023): FY 2023 is judged, FY 2022 still is not
    py, _ = pipeline.build_person_year(_dialysis_tables(202204))
    got = {(r.person_id, r.fy): (None if pd.isna(r.new_dialysis) else bool(r.new_dialysis)) for r in py.itertuples()}
    assert got == {("1", 2022): None, ("2", 2022): None, ("3", 2022): None,
                   ("1", 2023): False, ("2", 2023): True, ("3", 2023): False}
    num, den = indicators.indicator_flags(py, ["new_dialysis"])["new_dialysis"]
    fy = py["fy"].to_numpy()
    assert den.tolist() == (fy == 2023).tolist()  # 3 対象者 in FY 2023, none in 2022
    assert int(num.sum()) == 1  # 1/3 new in FY 2023


def test_footer_names_the_years_whose_new_dialysis_is_unknown():
    from hsutils.analysis import indicators

    # meta.json claims_history of a cache whose claims start in May 2021, fiscal years 2022–2024: 11 months before 2022
    history = {"first_ym": 202105, "months_to_fy_end": {"2022": 23, "2023": 35, "2024": 47},
               "nephropathy_lookback": {"requested": 36, "used": 23}}
    note = "新規人工透析導入者の割合: 2022年度は判定不能（前年度のレセプトなし: 年度開始前のレセプトが12か月未満）"
    assert indicators.lookback_note("new_dialysis", history) == note
    assert indicators.footer_conditions("条件A", ["kenshin_rate", "new_dialysis"], history) == f"条件A／{note}"
    both = indicators.lookback_note(["dm_untreated", "new_dialysis"], history)
    assert both == ("レセプトは2021年5月から。レセプトのさかのぼり期間は、最初の年度にそろえて全年度 23か月（既定 36か月）；"
                    + note)
    # 12 months before the first year (claims from April 2021): nothing to state
    full = {**history, "first_ym": 202104, "months_to_fy_end": {"2022": 24, "2023": 36, "2024": 48}}
    assert indicators.lookback_note("new_dialysis", full) is None
    assert indicators.lookback_note("new_dialysis", None) is None


def test_ikkatsu_list_flags_read_only_the_areas_claims_but_the_datas_first_month():
    """list_flags judges the area's persons on their own claims; the look-back still starts at the
    first month of the whole data. Here the data's first month (April 2021) is a claim of Z, a
    person of another municipality; W's only claim (diabetes, May 2022) would otherwise be the
    first month. The flags and the look-back note equal those judged with the whole claims table."""
    from hsutils.patterns import ikkatsu

    claims = _claims([("Z", 202104, False), ("W", 202205, True)])
    py = pd.concat([_kouki_rows(["W"], [2022, 2023, 2024]),
                    _kouki_rows(["Z"], [2022, 2023, 2024]).assign(muni_code="17202")], ignore_index=True)
    params = ikkatsu.make_params()
    table = {fy: programs.ikkatsu_flags(py, claims, None, None, fy, params) for fy in (2022, 2023, 2024)}
    for fy in (2023, 2024):
        got, note = ikkatsu.list_flags(py, {"claims_monthly": claims}, fy, params, table[fy], "17201")
        rows = py[(py["muni_code"] == "17201") & py["fy"].isin([fy, fy - 1])]
        expected = programs.ikkatsu_flags(rows, claims, None, None, fy, params, lookback_years=[fy])
        pd.testing.assert_frame_equal(got, expected[got.columns])
        assert note.startswith("レセプトは2021年4月から。")
    got23, _ = ikkatsu.list_flags(py, {"claims_monthly": claims}, 2023, params, table[2023], "17201")
    assert got23["ik_interruption"].tolist() == [True]  # W: a claim in May 2022, none in the last 6 months
    assert list(claims["person_id"]) == ["Z", "W"] and claims.attrs == {}  # the caller's table is untouched

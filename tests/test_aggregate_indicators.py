"""Strata aggregation, roll-ups and indicator tables with hand-worked values."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from hsutils import aggregate, indicators


def _persons(rows):
    """rows: (area, age_band, n, x) -> person frame with a numerator flag for n persons, x of them positive."""
    recs = []
    for area, band, n, x in rows:
        for i in range(n):
            recs.append({"fy": 2024, "muni_code": area, "district_code": "", "sex": 1, "age_band": band,
                         "flag": i < x})
    return pd.DataFrame(recs)


HAND = [("17201", "40-44", 100, 5), ("17201", "70-74", 100, 20),
        ("17202", "40-44", 50, 2), ("17202", "70-74", 150, 30)]
MASTER = pd.DataFrame({"muni_code": ["17201", "17202"], "name": ["金沢市", "七尾市"],
                       "medical_area_code": ["1702", "1703"], "medical_area": ["石川中央", "能登中部"],
                       "pref_code": [17, 17], "pref_name": ["石川県", "石川県"]})


def _strata():
    p = _persons(HAND)
    flag = p["flag"].to_numpy()
    return aggregate.strata_counts(p, {"x": (flag, np.ones(len(p), bool))})


def test_strata_counts_hand():
    s = _strata().set_index(["muni_code", "age_band"])
    assert s.loc[("17201", "40-44"), "numerator"] == 5
    assert s.loc[("17201", "40-44"), "denominator"] == 100
    assert s.loc[("17202", "70-74"), "numerator"] == 30
    assert s.loc[("17202", "70-74"), "denominator"] == 150
    assert len(s) == 4


def test_numerator_only_counted_inside_denominator():
    p = _persons([("17201", "40-44", 4, 4)])
    den = np.array([True, True, False, False])
    s = aggregate.strata_counts(p, {"x": (np.ones(4, bool), den)})
    assert s["numerator"].tolist() == [2] and s["denominator"].tolist() == [2]


def test_indicator_table_crude_direct_indirect_hand_values():
    t = indicators.indicator_table(_strata(), "muni", area_map=MASTER, suppress_threshold=10)
    a = t.set_index("area_code").loc["17201"]
    # crude 25/200
    assert a["crude_rate"] == pytest.approx(12.5)
    # direct: (7,766,000×0.05 + 7,892,000×0.20) / 15,658,000 = 1,966,700 / 15,658,000
    assert a["adj_rate"] == pytest.approx(100 * 1966700 / 15658000)
    # indirect: reference rates 7/150 and 50/250 -> E = 100×7/150 + 100×0.2 = 24.6667; O = 25
    assert a["expected"] == pytest.approx(24.666666667)
    assert a["sr"] == pytest.approx(25 / 24.666666667)
    assert a["comparison"] == "有意差なし"
    assert a["area_name"] == "金沢市" and a["medical_area"] == "石川中央"
    assert {"method", "conf", "suppressed", "judgement"} <= set(t.columns)


def test_dsr_suppressed_below_10_events():
    p = _persons([("17201", "40-44", 100, 9), ("17202", "40-44", 100, 10)])
    flag = p["flag"].to_numpy()
    s = aggregate.strata_counts(p, {"x": (flag, np.ones(len(p), bool))})
    t = indicators.indicator_table(s, "muni", area_map=MASTER).set_index("area_code")
    assert np.isnan(t.loc["17201", "adj_rate"])
    assert t.loc["17202", "adj_rate"] == pytest.approx(10.0)
    assert bool(t.loc["17201", "suppressed"]) is True
    assert bool(t.loc["17202", "suppressed"]) is False


def test_rollup_levels_consistent():
    s = _strata()
    muni = aggregate.rollup(s, MASTER, "muni")
    area = aggregate.rollup(s, MASTER, "medical_area")
    pref = aggregate.rollup(s, MASTER, "pref")
    assert muni["numerator"].sum() == area["numerator"].sum() == pref["numerator"].sum() == 57
    assert sorted(area["area_code"].unique()) == ["1702", "1703"]


def test_judgement_follows_polarity():
    j = indicators.judgement(np.array(["有意に高い", "有意に低い", "有意差なし", "有意に高い"], dtype=object),
                             np.array(["higher_better", "higher_better", "lower_better", None], dtype=object))
    assert j.tolist() == ["良い", "悪い", "差なし", "高い"]


def test_registry_has_at_least_25_indicators_with_sections():
    reg = indicators.registry_frame()
    assert len(reg) >= 25
    assert reg["indicator_id"].is_unique
    assert reg["domain"].str.startswith("§").all()
    for needed in ["kenshin_rate", "hokenshido_rate", "hokenshido_target", "metabo", "metabo_yobi", "ref_bp",
                   "hba1c8", "hg_bp", "egfr45", "egfr60", "urine_protein1", "smoking", "bmi25", "med_bp",
                   "med_glucose", "med_lipid"]:
        assert needed in set(reg["indicator_id"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["17201", "17202"]), st.sampled_from(["40-44", "45-49", "70-74"]),
                          st.sampled_from([1, 2]), st.booleans(), st.booleans()), min_size=1, max_size=60))
def test_strata_sum_equals_person_counts(rows):
    p = pd.DataFrame(rows, columns=["muni_code", "age_band", "sex", "num", "den"])
    p["fy"], p["district_code"] = 2024, ""
    s = aggregate.strata_counts(p, {"x": (p["num"].to_numpy(), p["den"].to_numpy())})
    assert s["denominator"].sum() == p["den"].sum()
    assert s["numerator"].sum() == (p["num"] & p["den"]).sum()
    both = aggregate.combine_strata([
        aggregate.strata_counts(p.iloc[: len(p) // 2], {"x": (p["num"].to_numpy()[: len(p) // 2],
                                                              p["den"].to_numpy()[: len(p) // 2])}),
        aggregate.strata_counts(p.iloc[len(p) // 2:], {"x": (p["num"].to_numpy()[len(p) // 2:],
                                                             p["den"].to_numpy()[len(p) // 2:])})])
    def _sorted(df):
        keys = list(aggregate.STRATA_KEYS) + ["indicator_id"]
        return (df.astype({k: str for k in keys}).sort_values(keys).reset_index(drop=True)
                [["numerator", "denominator"]])

    if len(s):
        pd.testing.assert_frame_equal(_sorted(both), _sorted(s))

"""Strata aggregation, roll-ups and indicator tables with hand-worked values."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from hsutils.analysis import aggregate, indicators
from hsutils.core import parallel


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


# --- the indicator table is computed by hsutils.stats (one engine) --------------------------------

def _tiny_strata():
    """Two towns, one indicator, sex × age band. Town 17201 has nobody aged 50-54 (an empty band);
    town 17202 has 6 events (DSR not published, ISR with exact limits)."""
    rows = [  # muni, sex, band, x, n
        ("17201", 1, "40-44", 6, 100), ("17201", 1, "45-49", 9, 120), ("17201", 2, "40-44", 3, 80),
        ("17202", 1, "40-44", 2, 50), ("17202", 1, "50-54", 3, 60), ("17202", 2, "45-49", 1, 40),
    ]
    df = pd.DataFrame(rows, columns=["muni_code", "sex", "age_band", "numerator", "denominator"])
    return df.assign(fy=2024, district_code="", indicator_id="metabo")


def test_indicator_table_values_equal_stats_and_hand_computed():
    from scipy.stats import chi2, norm

    from hsutils import stats

    t = indicators.indicator_table(_tiny_strata(), "muni", area_map=MASTER).set_index("area_code")
    a, b = t.loc["17201"], t.loc["17202"]
    z = norm.ppf(0.975)

    # crude, Wilson written out: x = 18, n = 300
    x, n = 18, 300
    p = x / n
    half = z * np.sqrt(z * z + 4 * x * (1 - p))
    wilson = ((2 * x + z * z - half) / (2 * (n + z * z)), (2 * x + z * z + half) / (2 * (n + z * z)))
    assert (a["crude_rate"], a["crude_lower"], a["crude_upper"]) == pytest.approx(
        (100 * p, 100 * wilson[0], 100 * wilson[1]), rel=1e-12)
    assert (a["crude_rate"], a["crude_lower"], a["crude_upper"]) == tuple(
        100 * v for v in stats.proportion_ci(x, n))

    # direct (Dobson, H27): bands 40-44 (9/180) and 45-49 (9/120); the empty 50-54 band is left out
    # with its weight (stats' empty-strata rule)
    w1, w2 = 7_766_000, 8_108_000
    W = w1 + w2
    dsr = (w1 * 9 / 180 + w2 * 9 / 120) / W
    var = (9 * (w1 / 180) ** 2 + 9 * (w2 / 120) ** 2) / W ** 2
    O = 18
    byar_lo = O * (1 - 1 / (9 * O) - z / (3 * np.sqrt(O))) ** 3
    byar_up = (O + 1) * (1 - 1 / (9 * (O + 1)) + z / (3 * np.sqrt(O + 1))) ** 3
    step = np.sqrt(var / O)
    hand = (100 * dsr, 100 * (dsr + step * (byar_lo - O)), 100 * (dsr + step * (byar_up - O)))
    assert (a["adj_rate"], a["adj_lower"], a["adj_upper"]) == pytest.approx(hand, rel=1e-12)
    assert (a["adj_rate"], a["adj_lower"], a["adj_upper"]) == stats.dsr([9, 9, 0], [180, 120, 0], [w1, w2, 8_451_000],
                                                                        multiplier=100)
    assert np.isnan(b["adj_rate"]) and np.isnan(b["adj_lower"])  # 6 events < 10

    # indirect: reference (both towns) rates by sex × band
    r = {(1, "40-44"): 8 / 150, (1, "45-49"): 9 / 120, (1, "50-54"): 3 / 60, (2, "40-44"): 3 / 80, (2, "45-49"): 1 / 40}
    e_a = 100 * r[1, "40-44"] + 120 * r[1, "45-49"] + 80 * r[2, "40-44"]
    e_b = 50 * r[1, "40-44"] + 60 * r[1, "50-54"] + 40 * r[2, "45-49"]
    assert a["expected"] == pytest.approx(e_a, rel=1e-12) and b["expected"] == pytest.approx(e_b, rel=1e-12)
    # 17201: O = 18 -> Byar's limits / E
    assert (a["sr"], a["sr_lower"], a["sr_upper"]) == pytest.approx((18 / e_a, byar_lo / e_a, byar_up / e_a), rel=1e-12)
    assert (a["sr"], a["sr_lower"], a["sr_upper"]) == pytest.approx(
        stats.isr(18, [100, 120, 80], [r[1, "40-44"], r[1, "45-49"], r[2, "40-44"]]), rel=1e-12)
    # 17202: O = 6 -> exact Poisson limits chi2(0.025; 12)/2 and chi2(0.975; 14)/2, over E
    exact = (chi2.ppf(0.025, 12) / 2 / e_b, chi2.ppf(0.975, 14) / 2 / e_b)
    assert (b["sr"], b["sr_lower"], b["sr_upper"]) == pytest.approx((6 / e_b, *exact), rel=1e-12)
    assert b["method"].endswith("exact Poisson") and a["method"].endswith("Byar")
    assert a["comparison"] == stats.compare_to_benchmark(a["sr_lower"], a["sr_upper"], 1.0)


def test_indicator_table_standard_that_lacks_a_band_gives_no_adjusted_rate():
    # S60 stops at 85+: a 後期 group with persons aged 85-89 cannot be standardised to it
    s = pd.DataFrame({"muni_code": "17201", "sex": 1, "age_band": ["75-79", "85-89"], "numerator": [20, 30],
                      "denominator": [100, 100], "fy": 2024, "district_code": "", "indicator_id": "kaigo_rate"})
    s60 = indicators.indicator_table(s, "muni", std_pop="S60").iloc[0]
    assert np.isnan(s60["adj_rate"]) and s60["crude_rate"] == pytest.approx(25.0)
    h27 = indicators.indicator_table(s, "muni", std_pop="H27").iloc[0]
    assert h27["adj_rate"] == pytest.approx(100 * (6_306_000 * 0.2 + 3_134_000 * 0.3) / (6_306_000 + 3_134_000))
    only_75 = indicators.indicator_table(s.iloc[:1], "muni", std_pop="S60").iloc[0]
    assert only_75["adj_rate"] == pytest.approx(20.0)


# ------------------------------------------------------------------ notebook 01's indicators_to_show

def test_indicators_to_show_accepts_japanese_names_and_ids():
    # a name as the tables show it and an id may be mixed; the order is the user's
    assert indicators.resolve_ids(["HbA1c 8.0%以上", "kenshin_rate", " 特定保健指導実施率 "]) == [
        "hba1c8", "kenshin_rate", "hokenshido_rate"]
    assert indicators.resolve_ids("eGFR 45未満") == ["egfr45"]
    assert indicators.resolve_ids(indicators.KEY_INDICATORS) == indicators.KEY_INDICATORS


def test_indicators_to_show_unknown_name_is_a_japanese_error_with_the_choices():
    from hsutils.core.errors import ParameterError

    with pytest.raises(ParameterError) as e:
        indicators.resolve_ids(["kenshin_rate", "HbA1c 8.0以上"])  # the % left out
    msg = str(e.value)
    assert "indicators_to_show" in msg and "「HbA1c 8.0以上」" in msg and "「kenshin_rate」" not in msg
    assert "HbA1c 8.0%以上（hba1c8）" in msg and "特定健診実施率（kenshin_rate）" in msg
    assert all(f"（{i.id}）" in msg for i in indicators.INDICATORS)
    with pytest.raises(ParameterError, match="一つもありません"):
        indicators.resolve_ids([])


def test_flag_helpers_fast_paths_equal_the_general_ones():
    """`_ge` / `_lt` on float32 measures (no float64 copy) give the float64 comparison at every boundary
    (a value on the threshold, one float32 step either side, thresholds that are not float32 numbers);
    `_eq` on a categorical's codes and `_b` on nullable booleans give what the pandas expressions give."""
    thresholds = [6.5, 45, 60, 25, 0.1, 1 / 3, 44.99999]
    at = np.array(thresholds, dtype=np.float32)
    values = np.concatenate([at, np.nextafter(at, np.float32(np.inf)), np.nextafter(at, np.float32(-np.inf)),
                             [np.nan, 0.0]]).astype(np.float32)
    py = pd.DataFrame({"f32": values, "f64": values.astype(np.float64)})
    for t in thresholds:
        ge32, ge64 = indicators._ge(py, "f32", t), indicators._ge(py, "f64", t)
        assert ge32.tolist() == ge64.tolist() and indicators._lt(py, "f32", t).tolist() == indicators._lt(py, "f64", t).tolist()
    # hand check: 0.1 is not a float32 number; float32(0.1) = 0.100000001… is ≥ 0.1, the float32 below it is not
    assert indicators._ge(pd.DataFrame({"x": np.array([0.1], np.float32)}), "x", 0.1).tolist() == [True]
    below = np.nextafter(np.float32(0.1), np.float32(0))
    assert indicators._ge(pd.DataFrame({"x": np.array([below], np.float32)}), "x", 0.1).tolist() == [False]
    cats = pd.DataFrame({"m": pd.Categorical(["該当", None, "予備群", "該当"], categories=["該当", "予備群", "非該当"]),
                         "b": pd.array([True, None, False, True], dtype="boolean")})
    assert indicators._eq(cats, "m", "該当").tolist() == [True, False, False, True]
    assert indicators._eq(cats, "m", "非該当").tolist() == [False] * 4  # a category without rows
    assert indicators._eq(cats, "m", "判定不能").tolist() == [False] * 4  # not a category: never the missing rows
    assert indicators._b(cats, "b").tolist() == [True, False, False, True]


def test_age_band_of_integer_ages_equals_the_float_path():
    """schema.age_band: integer ages are banded through a lookup of each possible age; the bands (codes,
    categories, order) are those of the float path at every edge, and a negative or missing age keeps it."""
    from hsutils.core.schema import age_band

    ages = np.array([0, 39, 40, 44, 45, 74, 75, 89, 90, 130], dtype=np.int16)
    fast, general = age_band(ages), age_band(ages.astype(float))
    assert fast.equals(general) and fast.codes.tolist() == general.codes.tolist()
    assert list(fast) == ["<40", "<40", "40-44", "40-44", "45-49", "70-74", "75-79", "85-89", "90+", "90+"]
    assert age_band(pd.Series(ages.astype(np.uint8))).equals(general)
    assert list(age_band(np.array([-1, 40]))) == ["<40", "40-44"] and pd.isna(age_band(pd.Series([np.nan, 41.0]))[0])


def test_derived_columns_of_each_indicator_give_its_flags(prepared):
    """`derived_columns` (Indicator.derived) names every clinical derivation an indicator reads: deriving only
    those gives the same numerator and denominator as deriving everything (demo person_year re-derived)."""
    from hsutils.rules import clinical

    raw = prepared.person_year.drop(columns=list(clinical.DERIVED_COLUMNS))
    full = clinical.derive_kenshin(raw)
    assert list(full.columns[-len(clinical.DERIVED_COLUMNS):]) == list(clinical.DERIVED_COLUMNS)
    for ind in indicators.INDICATORS:
        (num, den), = indicators.indicator_flags(full, [ind.id]).values()
        some = clinical.derive_kenshin(raw, indicators.derived_columns([ind.id]))
        (num_s, den_s), = indicators.indicator_flags(some, [ind.id]).values()
        assert np.array_equal(num, num_s) and np.array_equal(den, den_s), ind.id
    # the check means something: the derived inputs are present and flag persons in the demo
    for ind_id in ("metabo", "hokenshido_target", "ref_bp", "ref_kidney", "ref_any", "hba1c8", "egfr45", "bmi25",
                   "dm_hba1c8", "hg_bp"):
        (num, den), = indicators.indicator_flags(full, [ind_id]).values()
        assert num.sum() > 0 and den.sum() > num.sum(), ind_id
    assert indicators.derived_columns(["kenshin_rate", "hba1c65"]) == []
    assert indicators.derived_columns(["egfr45", "ref_bp"]) == ["egfr_calc", "ref_bp"]  # DERIVED_COLUMNS order
    with pytest.raises(ValueError):
        clinical.derive_kenshin(raw, ["ckd_stage"])


def test_derive_kenshin_selected_columns_equal_the_full_derivation(prepared):
    """A selection derives the same values, in DERIVED_COLUMNS order, and replaces only the selected columns."""
    from hsutils.rules import clinical

    raw = prepared.person_year.drop(columns=list(clinical.DERIVED_COLUMNS))
    full = clinical.derive_kenshin(raw)
    some = clinical.derive_kenshin(raw.assign(ckd_g="keep"), ["ref_any", "ckd_colour", "egfr_calc"])
    assert list(some.columns[-3:]) == ["egfr_calc", "ckd_colour", "ref_any"]
    assert (some["ckd_g"] == "keep").all()
    for col in ("egfr_calc", "ckd_colour", "ref_any"):
        pd.testing.assert_series_equal(some[col], full[col])


def test_flags_counted_as_they_come_give_the_strata_of_all_flags_held(prepared, monkeypatch):
    """`strata_counts` on `iter_indicator_flags` (each indicator counted as it is made, as
    `pipeline.build_strata` does) equals `strata_counts` on the dict of every flag, with the flags
    counted on one thread and on two (the demo person_year, every registered indicator); the shared
    populations are not cached once the iteration has ended."""
    py = prepared.person_year
    held = aggregate.strata_counts(py, indicators.indicator_flags(py))
    assert held["numerator"].sum() > 0 and held["indicator_id"].nunique() > 20
    for threads_from in (1 << 40, 0):
        monkeypatch.setattr(aggregate, "PARALLEL_MIN_COUNT_ROWS", threads_from)
        monkeypatch.setattr(parallel, "cores", lambda: 2)
        streamed = aggregate.strata_counts(py, indicators.iter_indicator_flags(py))
        pd.testing.assert_frame_equal(streamed, held, check_categorical=True)
        assert not indicators._MEMO
    pd.testing.assert_frame_equal(aggregate.strata_counts(py, indicators.iter_indicator_flags(py, ["ref_bp"])),
                                  held[held["indicator_id"] == "ref_bp"].reset_index(drop=True)
                                  .assign(indicator_id=lambda d: d["indicator_id"].cat.set_categories(["ref_bp"])),
                                  check_categorical=True)


def test_age_band_gathered_on_threads_equals_one_thread(monkeypatch):
    """Integer ages gathered into bands block by block on threads (`hsutils.core.parallel`) give the
    bands of one thread, at the band edges (39/40, 74/75, 89/90)."""
    from hsutils.core.schema import age_band

    ages = np.tile(np.array([0, 39, 40, 44, 45, 74, 75, 89, 90, 120], dtype=np.int16), 1_001)
    one = age_band(ages)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_ROWS", 0)
    monkeypatch.setattr(parallel, "BLOCK_ROWS", 777)
    monkeypatch.setattr(parallel, "cores", lambda: 3)
    threaded = age_band(ages)
    assert threaded.equals(one)
    assert list(threaded[:10]) == ["<40", "<40", "40-44", "40-44", "45-49", "70-74", "75-79", "85-89", "90+", "90+"]

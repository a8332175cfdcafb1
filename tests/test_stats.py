"""Tests of hsutils.stats (docs/design.md §4, docs/methods.md).

Expected values are literals: published tables (Newcombe 1998; exact Poisson tables), the
worked values of docs/methods.md, hand calculations written out in comments, and officially
published age-adjusted rates copied into tests/data/refdata (PROVENANCE.md §3 there).
"""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsutils import stats
from hsutils.core.errors import ParameterError

REFDATA = Path(__file__).resolve().parent / "data" / "refdata"  # copied reference data, see PROVENANCE.md there

Z95 = 1.959963984540054  # STATS_METHODS notation
Z998 = 3.090232306167813


# --- confidence levels -------------------------------------------------------------------------

def test_z_values_and_percent_conf():
    assert stats.z_value(0.95) == pytest.approx(Z95, rel=1e-15)
    assert stats.z_value(0.998) == pytest.approx(Z998, rel=1e-15)
    assert stats.z_value(95) == pytest.approx(Z95, rel=1e-15)
    assert stats.normalise_conf(99.8) == pytest.approx(0.998)
    for bad in (0, -1, 101, "abc"):
        with pytest.raises(ParameterError):
            stats.normalise_conf(bad)


# --- Wilson ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "x, n, lower, upper",
    [  # Newcombe RG (1998) Stat Med 17:857-872, Table I, method 3 (Wilson score)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_published_examples(x, n, lower, upper):
    p, lo, up = stats.proportion_ci(x, n)
    assert p == pytest.approx(x / n)
    assert lo == pytest.approx(lower, abs=5e-5)
    assert up == pytest.approx(upper, abs=5e-5)


def test_wilson_edges_and_types():
    # x = 0: lower exactly 0, upper z²/(n + z²) = 3.841458821/(10 + 3.841458821) = 0.277532...
    p, lo, up = stats.proportion_ci(0, 10)
    assert (p, lo) == (0.0, 0.0)
    assert up == pytest.approx(0.2775327998628892, rel=1e-12)
    # x = n: upper exactly 1
    assert stats.proportion_ci(10, 10)[2] == 1.0
    # n = 0 and missing values are NaN, not errors
    assert all(np.isnan(v) for v in stats.proportion_ci(0, 0))
    assert all(np.isnan(v) for v in stats.proportion_ci(np.nan, 10))
    # level 1 gives [0, 1] (docs/methods.md §0)
    assert stats.proportion_ci(3, 10, conf=1)[1:] == (0.0, 1.0)
    # scalars give floats; Series keep their index; arrays broadcast
    assert isinstance(stats.proportion_ci(1, 2)[0], float)
    s = pd.Series([1, 2], index=["a", "b"])
    p, lo, up = stats.proportion_ci(s, 4)
    assert isinstance(lo, pd.Series) and list(lo.index) == ["a", "b"]
    p, lo, up = stats.proportion_ci(np.array([[0], [1]]), np.array([5, 10]))
    assert lo.shape == (2, 2)
    with pytest.raises(ParameterError):
        stats.proportion_ci(5, 4)
    with pytest.raises(ParameterError):
        stats.proportion_ci(-1, 4)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 100000), frac=st.floats(0, 1), conf=st.sampled_from([0.9, 0.95, 0.99, 0.998]))
def test_wilson_contains_p_and_stays_in_unit_interval(n, frac, conf):
    x = round(frac * n)
    p, lo, up = stats.proportion_ci(x, n, conf)
    assert 0.0 <= lo <= p <= up <= 1.0


# --- Newcombe difference and comparisons -------------------------------------------------------

@pytest.mark.parametrize(
    "x1, n1, x2, n2, diff, lower, upper",
    [  # Newcombe RG (1998) Stat Med 17:873-890, Table II, method 10 (difference = later - earlier)
        (48, 80, 56, 70, 0.2, 0.0524, 0.3339),
        (3, 10, 9, 10, 0.6, 0.1705, 0.8090),
        (0, 29, 5, 56, 0.0893, -0.0381, 0.1926),
    ],
)
def test_newcombe_hybrid_score_published_examples(x1, n1, x2, n2, diff, lower, upper):
    d, lo, up = stats.proportion_difference_ci(x1, n1, x2, n2)
    assert d == pytest.approx(diff, abs=5e-5)
    assert lo == pytest.approx(lower, abs=5e-5)
    assert up == pytest.approx(upper, abs=5e-5)


def test_compare_to_benchmark_and_change_judgement():
    labels = stats.compare_to_benchmark(np.array([0.31, 0.1, 0.1, 0.30, np.nan]),
                                        np.array([0.40, 0.29, 0.5, 0.5, 0.4]), 0.30)
    # interval touching the benchmark (lower == 0.30) is not significant
    assert list(labels[:4]) == ["有意に高い", "有意に低い", "有意差なし", "有意差なし"]
    assert pd.isna(labels[4])
    assert stats.compare_to_benchmark(0.5, 0.6, 0.4) == "有意に高い"
    # 48/80 -> 56/70: the difference interval (0.0524, 0.3339) is above 0
    _, lo, up = stats.proportion_difference_ci(48, 80, 56, 70)
    assert stats.change_judgement(lo, up, higher_is_better=True) == "改善"
    assert stats.change_judgement(lo, up, higher_is_better=False) == "悪化"
    assert stats.change_judgement(lo, up) == "増加"
    assert stats.change_judgement(-0.1, 0.1, higher_is_better=True) == "変化なし"
    assert stats.change_judgement(-0.3, -0.1, higher_is_better=True) == "悪化"


# --- count limits ------------------------------------------------------------------------------

def test_exact_poisson_zero_count():
    # docs/methods.md §1b: O = 0 -> lower 0, upper -ln(0.025) and -ln(0.001)
    assert stats.exact_poisson_limits(0, 0.95) == (0.0, pytest.approx(3.688879454, rel=1e-9))
    assert stats.exact_poisson_limits(0, 0.998) == (0.0, pytest.approx(6.907755279, rel=1e-9))


@pytest.mark.parametrize(
    "x, lower, upper",
    [  # standard exact Poisson 95 % tables (e.g. Armitage & Berry; Geigy)
        (1, 0.0253, 5.5716),
        (9, 4.1154, 17.0848),
        (10, 4.7954, 18.3904),
    ],
)
def test_exact_poisson_tables(x, lower, upper):
    lo, up = stats.exact_poisson_limits(x)
    assert lo == pytest.approx(lower, abs=5e-5)
    assert up == pytest.approx(upper, abs=5e-5)


def test_byar_hand_worked():
    # O = 10: 10·(1 − 1/90 − z/(3√10))³ = 10·0.782290...³ ; 11·(1 − 1/99 + z/(3√11))³
    lo, up = stats.byar_limits(10)
    assert lo == pytest.approx(4.787449913967563, rel=1e-9)
    assert up == pytest.approx(18.391458605756473, rel=1e-9)
    # O = 15 (used in the DSR example below)
    lo, up = stats.byar_limits(15)
    assert lo == pytest.approx(8.389264013214046, rel=1e-12)
    assert up == pytest.approx(24.741631343239263, rel=1e-12)
    # negative lower limit is NaN (docs/methods.md §1a: O = 1 at 99.8 %)
    assert np.isnan(stats.byar_limits(1, 0.998)[0])


def test_exact_to_byar_switch_between_9_and_10():
    lo, up = stats.count_limits(np.array([9.0, 10.0]))
    assert lo[0] == pytest.approx(4.1154, abs=5e-5)  # exact for 9
    assert up[0] == pytest.approx(17.0848, abs=5e-5)
    assert lo[1] == pytest.approx(4.787449913967563, rel=1e-9)  # Byar for 10 (exact would be 4.7954)
    assert up[1] == pytest.approx(18.391458605756473, rel=1e-9)
    assert list(stats.count_method(np.array([9, 10]))) == ["exact Poisson", "Byar"]


def test_rate_ci():
    # 0 events in 1000 person-years, per 1000: upper = 3.688879454/1000·1000
    r, lo, up = stats.rate_ci(0, 1000, multiplier=1000)
    assert (r, lo) == (0.0, 0.0)
    assert up == pytest.approx(3.688879454, rel=1e-9)
    # 10 events in 2000, per 100000: Byar limits / 2000 · 1e5
    r, lo, up = stats.rate_ci(10, 2000, multiplier=100000)
    assert r == pytest.approx(500.0)
    assert lo == pytest.approx(4.787449913967563 / 2000 * 1e5, rel=1e-9)
    assert up == pytest.approx(18.391458605756473 / 2000 * 1e5, rel=1e-9)
    # x may exceed the denominator (events per person-year); denom 0 -> NaN
    assert stats.rate_ci(250, 220)[0] == pytest.approx(250 / 220)
    assert all(np.isnan(v) for v in stats.rate_ci(3, 0))
    r, lo, up = stats.rate_ci(pd.Series([9, 10], index=[7, 8]), pd.Series([100, 100], index=[7, 8]))
    assert list(r.index) == [7, 8] and lo[7] == pytest.approx(0.041154, abs=5e-7)


# --- direct standardisation --------------------------------------------------------------------

def test_dsr_hand_worked():
    # strata rates 2/1000, 5/500, 8/400; weights 100, 200, 300
    # DSR = (100·0.002 + 200·0.01 + 300·0.02)/600 = 8.2/600 = 0.0136667 -> 13.6667 per 1000
    # V = (2·0.1² + 5·0.4² + 8·0.75²)/600² = 5.32/360000; step = sqrt(V/15)
    # limits = DSR + step·(Byar(15) − 15)
    rate, lo, up = stats.dsr([2, 5, 8], [1000, 500, 400], [100, 200, 300], multiplier=1000)
    assert rate == pytest.approx(13.666666666666666, rel=1e-12)
    assert lo == pytest.approx(7.105081815107044, rel=1e-10)
    assert up == pytest.approx(23.335868519387212, rel=1e-10)


def test_dsr_suppressed_below_10_published_at_10():
    w = [100, 200, 300]
    n = [1000, 500, 400]
    assert all(np.isnan(v) for v in stats.dsr([2, 3, 4], n, w))  # total 9
    rate, lo, up = stats.dsr([2, 3, 5], n, w)  # total 10
    assert rate == pytest.approx((100 * 0.002 + 200 * 0.006 + 300 * 0.0125) / 600)
    assert lo < rate < up


def test_dsr_empty_strata_left_out_with_their_weight():
    # the module's one rule (docs/methods.md §5, §8): a stratum with population 0 and no events is
    # left out together with its weight, i.e. the DSR PHEindicatormethods gives without that row
    x, n, w = [2, 5, 8, 0], [1000, 500, 400, 0], [100, 200, 300, 400]
    with_empty = stats.dsr(x, n, w, multiplier=1000)
    without = stats.dsr(x[:3], n[:3], w[:3], multiplier=1000)
    assert with_empty == pytest.approx(without, rel=1e-15)
    assert with_empty[0] == pytest.approx(13.666666666666666)  # = test_dsr_hand_worked
    # a stratum with nobody in it needs no standard weight; one with people does
    assert stats.dsr(x, n, [100, 200, 300, np.nan], multiplier=1000)[0] == pytest.approx(13.666666666666666)
    with pytest.raises(ParameterError):
        stats.dsr([2, 5, 8], [1000, 500, 400], [100, 200, np.nan])
    with pytest.raises(ParameterError):
        stats.dsr([2, 5, 8, 1], n, w)  # events in a stratum with nobody in it
    # grouped: the same rule
    df = pd.DataFrame({"g": ["a"] * 4, "x": x, "n": n, "std_pop": w})
    assert stats.dsr_grouped(df, ["g"], "x", "n", multiplier=1000)["value"].iloc[0] == pytest.approx(13.666666666666666)


def test_dsr_aligns_series_by_label_and_vectorises_2d():
    x = pd.Series([8, 5, 2], index=["c", "b", "a"])
    n = pd.Series([400, 500, 1000], index=["c", "b", "a"])
    w = pd.Series([100, 200, 300], index=["a", "b", "c"])
    assert stats.dsr(x, n, w, multiplier=1000)[0] == pytest.approx(13.666666666666666)
    rates = stats.dsr(np.array([[2, 5, 8], [2, 3, 4]]), [1000, 500, 400], [100, 200, 300], multiplier=1000)[0]
    assert rates[0] == pytest.approx(13.666666666666666) and np.isnan(rates[1])


ISHIKAWA_2020_MALE_DEATHS = [1, 1, 0, 1, 0, 0, 3, 2, 10, 22, 28, 62, 95, 190, 387]
ISHIKAWA_2020_MALE_POP = [21077, 23815, 25212, 28616, 29551, 25871, 27546, 30593, 36973, 44308,
                          36270, 32838, 32002, 35181, 42582]
BANDS_0_74 = [f"{a}-{a + 4}" for a in range(0, 75, 5)]


def test_dsr_reproduces_published_ganjoho_asr75_ishikawa():
    # がん情報サービス 75歳未満年齢調整死亡率, 石川 2020 男, 昭和60年モデル人口 (PROVENANCE §5a)
    w = stats.standard_population("S60", bands=BANDS_0_74)
    assert w.sum() == 115656000
    rate, lo, up = stats.dsr(ISHIKAWA_2020_MALE_DEATHS, ISHIKAWA_2020_MALE_POP, w, multiplier=100000)
    assert rate == pytest.approx(86.63788112227749, rel=1e-12)
    assert lo < rate < up


def _ganjoho_long(filename: str, value: str) -> pd.DataFrame:
    wide = pd.read_csv(REFDATA / filename)
    wide = wide[wide["年"].isin([2015, 2020])]
    cols = [f"{b}歳" for b in BANDS_0_74]
    long = wide.melt(id_vars=["都道府県番号", "年", "性別"], value_vars=cols, var_name="band", value_name=value)
    long["band"] = long["band"].str.removesuffix("歳")
    return long


def test_dsr_grouped_reproduces_all_published_ganjoho_asr75():
    deaths = _ganjoho_long("ganjoho_allcancer_deaths_by_pref_sex_age5_2015_2020_2024.csv", "deaths")
    pop = _ganjoho_long("ganjoho_allcancer_population_by_pref_sex_age5_2015_2020_2024.csv", "pop")
    strata = deaths.merge(pop, on=["都道府県番号", "年", "性別", "band"], validate="one_to_one")
    out = stats.dsr_grouped(strata, ["都道府県番号", "年", "性別"], "deaths", "pop",
                            multiplier=100000, standard="S60", band_col="band")
    published = pd.read_csv(REFDATA / "ganjoho_allcancer_asr75_published_2015_2020.csv")
    check = out.merge(published, left_on=["都道府県番号", "年", "性別"], right_on=["pref_code", "year", "sex"],
                      validate="one_to_one")
    assert len(check) == 288  # (全国 + 47) × 3 sexes × 2 years
    # 2015 values are published to 8 decimals
    assert np.abs(check["value"] - check["asr75_per100k_S60model"]).max() < 1e-7
    assert (check["method"] == "Dobson").all() and (check["conf"] == 0.95).all()
    assert (check["lower"] < check["value"]).all() and (check["value"] < check["upper"]).all()
    # grouped and scalar versions agree, including the limits
    row = check[(check["pref"] == "石川") & (check["year"] == 2020) & (check["sex"] == "男")].iloc[0]
    rate, lo, up = stats.dsr(ISHIKAWA_2020_MALE_DEATHS, ISHIKAWA_2020_MALE_POP,
                             stats.standard_population("S60", bands=BANDS_0_74), multiplier=100000)
    assert (row["value"], row["lower"], row["upper"]) == pytest.approx((rate, lo, up), rel=1e-12)
    assert row["total_count"] == sum(ISHIKAWA_2020_MALE_DEATHS)


def test_dsr_grouped_suppression_and_std_col():
    df = pd.DataFrame({
        "area": ["A"] * 3 + ["B"] * 3,
        "x": [2, 5, 8, 2, 3, 4],
        "n": [1000, 500, 400] * 2,
        "std_pop": [100, 200, 300] * 2,
    })
    out = stats.dsr_grouped(df, ["area"], "x", "n", multiplier=1000)
    assert list(out["area"]) == ["A", "B"]
    assert out.loc[0, "value"] == pytest.approx(13.666666666666666)
    assert out.loc[0, "lower"] == pytest.approx(7.105081815107044, rel=1e-10)
    assert np.isnan(out.loc[1, "value"]) and np.isnan(out.loc[1, "upper"])
    assert list(out["total_count"]) == [15, 9]
    assert list(out["total_pop"]) == [1900, 1900]


@settings(max_examples=100, deadline=None)
@given(
    x=st.lists(st.integers(0, 200), min_size=11, max_size=11).filter(lambda v: sum(v) >= 10),
    k=st.floats(0.0001, 0.05),
)
def test_dsr_equals_crude_rate_for_standard_age_structure(x, k):
    w = stats.standard_population("H27", bands=stats.AGE_BANDS)
    n = np.asarray(w) * k  # local population proportional to the standard
    rate = stats.dsr(x, n, w)[0]
    assert rate == pytest.approx(sum(x) / n.sum(), rel=1e-9)


# --- indirect standardisation ------------------------------------------------------------------

def test_isr_hand_worked():
    # E = 1000·0.002 + 2000·0.004 = 10; O = 12 -> 1.2; limits = Byar(12)/10
    ratio, lo, up = stats.isr([5, 7], [1000, 2000], [0.002, 0.004])
    assert ratio == pytest.approx(1.2)
    assert lo == pytest.approx(0.6193509843079028, rel=1e-12)
    assert up == pytest.approx(2.0962858053616698, rel=1e-12)
    # a scalar total gives the same; refvalue 100 scales
    assert stats.isr(12, [1000, 2000], [0.002, 0.004], refvalue=100)[0] == pytest.approx(120.0)
    # O = 0: lower 0, exact upper 3.688879454/E
    ratio, lo, up = stats.isr(0, [1000, 2000], [0.002, 0.004])
    assert (ratio, lo) == (0.0, 0.0) and up == pytest.approx(0.3688879454, rel=1e-9)
    # O = 9 exact: 4.1154/10
    assert stats.isr(9, [1000, 2000], [0.002, 0.004])[1] == pytest.approx(0.41154, abs=5e-6)
    # E = 0 -> NaN
    assert np.isnan(stats.isr(3, [0, 0], [0.1, 0.2])[0])


@settings(max_examples=100, deadline=None)
@given(
    n=st.lists(st.integers(1, 100000), min_size=11, max_size=11),
    rates=st.lists(st.floats(0.001, 0.5), min_size=11, max_size=11),
)
def test_isr_is_one_when_local_rates_equal_reference(n, rates):
    observed = np.asarray(n, dtype=float) * np.asarray(rates)
    ratio, lo, up = stats.isr(observed, n, rates)
    assert ratio == pytest.approx(1.0, rel=1e-9)
    assert lo <= 1.0 <= up


def test_isr_grouped():
    df = pd.DataFrame({
        "area": ["A", "A", "B", "B"],
        "obs": [5, 7, 3, np.nan],
        "pop": [1000, 2000, 500, 500],
        "ref": [0.002, 0.004, 0.002, 0.004],
    })
    out = stats.isr_grouped(df, ["area"], "obs", "pop", "ref")
    assert list(out["expected"]) == pytest.approx([10.0, 3.0])
    assert list(out["observed"]) == [12.0, 3.0]
    assert out.loc[0, "lower"] == pytest.approx(0.6193509843079028, rel=1e-12)
    assert list(out["method"]) == ["Byar", "exact Poisson"]
    assert out.loc[1, "value"] == pytest.approx(1.0)


# --- funnels -----------------------------------------------------------------------------------

def test_funnel_limits_proportion():
    # target 0.3, n = 100: se = sqrt(0.21/100) = 0.0458258; 0.3 ∓ z·se
    f = stats.funnel_limits([100, 0], 0.3)
    assert list(f.columns) == ["n", "target", "lower_95_0", "upper_95_0", "lower_99_8", "upper_99_8"]
    assert f.loc[0, "lower_95_0"] == pytest.approx(0.21018316681457944, rel=1e-12)
    assert f.loc[0, "upper_95_0"] == pytest.approx(0.38981683318542054, rel=1e-12)
    assert f.loc[0, "lower_99_8"] == pytest.approx(0.15838776541988045, rel=1e-12)
    assert f.loc[0, "upper_99_8"] == pytest.approx(0.44161223458011956, rel=1e-12)
    assert f.loc[1, ["lower_95_0", "upper_95_0"]].isna().all()
    # clipped to [0, 1] for small n
    g = stats.funnel_limits(2, 0.05)
    assert g.loc[0, "lower_99_8"] == 0.0
    assert list(stats.funnel_limits(50, 0.5, conf=0.9).columns) == ["n", "target", "lower_90_0", "upper_90_0"]


def test_funnel_limits_ratio_pass_through_exact_poisson_points():
    # docs/methods.md §7b: for O = 10 the 95 % lower line passes through E = 18.39036 (exact upper
    # limit of 10) at O/E, and the upper line through E = 4.79539 (exact lower limit of 10).
    e_low, e_high = 18.390356, 4.795389
    f = stats.funnel_limits([e_low, e_high], 1.0, kind="ratio")
    assert f.loc[0, "lower_95_0"] == pytest.approx(10 / e_low, rel=1e-5)
    assert f.loc[1, "upper_95_0"] == pytest.approx(10 / e_high, rel=1e-5)
    # O = 0: below E = -ln(0.025) = 3.688879 the lower limit is 0
    assert stats.funnel_limits(3.6, 1.0, kind="ratio").loc[0, "lower_95_0"] == 0.0
    # limits narrow around 1 as E grows
    g = stats.funnel_limits([10, 100, 1000], 1.0, kind="ratio")
    assert (np.diff(g["upper_99_8"]) < 0).all() and (np.diff(g["lower_99_8"]) > 0).all()
    assert (g["lower_99_8"] < g["lower_95_0"]).all() and (g["upper_95_0"] < g["upper_99_8"]).all()


def test_funnel_significance():
    # target 0.3, n = 100: 95 % (0.2102, 0.3898), 99.8 % (0.1584, 0.4416)
    labels = stats.funnel_significance(np.array([15, 20, 30, 40, 45, 5]), np.array([100] * 5 + [0]), 0.3)
    assert list(labels[:5]) == ["99.8%限界より低い", "95%限界より低い", "限界内", "95%限界より高い", "99.8%限界より高い"]
    assert pd.isna(labels[5])
    # ratios with E = 10: O = 20 -> Byar lower 20·0.84835³ = 12.21 at 95 % (> 10), 8.92 at 99.8 %;
    # O = 3 -> exact upper 7.22 at 95 % (< 10), 13.06 at 99.8 %; O = 0 -> 3.69 and 6.91 (< 10)
    labels = stats.funnel_significance(np.array([20, 30, 10, 3, 0]), np.array([10.0] * 5), 1.0, kind="ratio")
    assert list(labels) == ["95%限界より高い", "99.8%限界より高い", "限界内", "95%限界より低い", "99.8%限界より低い"]


# --- standard population -----------------------------------------------------------------------

def test_h27_standard_population_matches_domain_and_refdata():
    h27 = stats.H27_STANDARD_POPULATION
    assert h27.sum() == 125319000  # docs/rules.md §8 total
    assert h27["0-4"] == 5026000 and h27["95+"] == 423000
    ref = pd.read_csv(REFDATA / "standard_population_H27_model_2015.csv")
    assert list(ref["population"]) == list(h27)
    s60 = pd.read_csv(REFDATA / "standard_population_S60_model_1985.csv")
    assert list(s60["population"]) == list(stats.S60_STANDARD_POPULATION)


def test_standard_population_for_our_bands():
    w = stats.standard_population()
    assert list(w.index) == ["40-44", "45-49", "50-54", "55-59", "60-64", "65-69", "70-74",
                             "75-79", "80-84", "85-89", "90+"]
    assert w["90+"] == 1548000 + 423000
    assert w["40-44"] == 7766000
    assert stats.standard_population(bands=["40-74"])["40-74"] == 59391000
    with pytest.raises(ParameterError):
        stats.standard_population("S60", bands=["85-89"])  # S60 stops at 85+
    # a user standard (e.g. a prefecture) with other label spellings
    user = pd.DataFrame({"年齢": ["40～44歳", "45～49歳", "50歳以上"], "人口": [10, 20, 30]})
    assert list(stats.standard_population(user, bands=["40-49", "50+"])) == [30.0, 30.0]


# --- standard population registry (docs/rules.md §8, docs/design.md §5) -------------------------------------------

def _pref_strata():
    rows = [  # fy, age_band, indicator_id, denominator (sex rows are summed)
        (2023, "40-44", "kenshin_rate", 100), (2023, "90+", "kouki_kenshin_rate", 7),
        (2024, "40-44", "kenshin_rate", 120), (2024, "40-44", "kenshin_rate", 30),
        (2024, "70-74", "kenshin_rate", 200), (2024, "75-79", "kouki_kenshin_rate", 90),
        (2024, "40-44", "metabo", 999),  # another indicator's population is not the standard
    ]
    return pd.DataFrame(rows, columns=["fy", "age_band", "indicator_id", "denominator"]).assign(sex=1)


def test_standard_population_pref_from_data():
    w = stats.standard_population("pref", data=_pref_strata())  # default: latest year 2024
    assert w["40-44"] == 150 and w["70-74"] == 200 and w["75-79"] == 90
    assert w["45-49"] == 0 and w["90+"] == 0  # bands with nobody have weight 0
    w23 = stats.standard_population("pref", bands=["40-44", "75+"], data=_pref_strata(), fy=2023)
    assert list(w23) == [100.0, 7.0]
    with pytest.raises(ParameterError):
        stats.standard_population("pref")  # needs the data
    with pytest.raises(ParameterError):
        stats.standard_population("pref", data=_pref_strata(), fy=2020)
    assert "2024年度" in stats.standard_population_label("pref", fy=2024)


def test_standard_population_csv_named_and_unknown(tmp_path):
    f = tmp_path / "std.csv"
    f.write_text("年齢階級,人口\n40-44,10\n45-49,20\n50+,30\n", encoding="utf-8")
    assert list(stats.standard_population(f, bands=["40-49", "50+"])) == [30.0, 30.0]
    assert list(stats.standard_population(str(f), bands=["40-44"])) == [10.0]
    bad = tmp_path / "bad.csv"
    bad.write_text("年齢階級,人口\n40-44,10\n45-49,-3\n", encoding="utf-8")
    with pytest.raises(ParameterError, match="3 行目"):
        stats.standard_population(bad, bands=None)
    with pytest.raises(ParameterError):
        stats.standard_population(tmp_path / "missing.csv")
    # the Japanese aliases name the same table
    pd.testing.assert_series_equal(stats.standard_population("平成27年モデル人口"), stats.standard_population("H27"))
    with pytest.raises(ParameterError):
        stats.standard_population("national")
    assert stats.standard_population_label("H27") == "平成27年モデル人口"
    assert stats.standard_population_label("S60") == "昭和60年モデル人口"


# --- grouped functions (tidy frame in, tidy frame out) ------------------------------------------------

def test_proportion_and_rate_grouped_match_the_scalar_functions():
    df = pd.DataFrame({"area": ["a", "a", "b", "b", "c"], "band": ["x", "y", "x", "y", "x"],
                       "num": [3, 4, 0, 12, 0], "den": [50, 60, 40, 80, 0]})
    out = stats.proportion_grouped(df, ["area"], "num", "den", conf=95, multiplier=100).set_index("area")
    assert list(out.columns) == ["num", "den", "value", "lower", "upper", "statistic", "method", "conf"]
    assert out.loc["a", "num"] == 7 and out.loc["a", "den"] == 110 and out["num"].dtype == np.int64
    p, lo, up = stats.proportion_ci(7, 110)
    assert (out.loc["a", "value"], out.loc["a", "lower"], out.loc["a", "upper"]) == pytest.approx(
        (100 * p, 100 * lo, 100 * up), rel=1e-15)
    assert out.loc["b", "value"] == pytest.approx(10.0)
    assert np.isnan(out.loc["c", "value"])  # n = 0
    assert set(out["statistic"]) == {"percentage"} and set(out["method"]) == {"Wilson"}
    assert set(out["conf"]) == {0.95}
    whole = stats.proportion_grouped(df, [], "num", "den")
    assert whole["num"].iloc[0] == 19 and whole["statistic"].iloc[0] == "proportion of 1"

    r = stats.rate_grouped(df, ["area"], "num", "den", multiplier=1000).set_index("area")
    assert r.loc["a", "method"] == "exact Poisson" and r.loc["b", "method"] == "Byar"
    assert (r.loc["b", "value"], r.loc["b", "lower"], r.loc["b", "upper"]) == pytest.approx(
        stats.rate_ci(12, 120, multiplier=1000), rel=1e-15)
    assert r["statistic"].iloc[0] == "rate per 1000"


def test_isr_from_expected_equals_isr():
    # E = 1000·0.002 + 2000·0.004 = 10; O = 12 (Byar) and 9 (exact)
    for observed in (12, 9):
        assert stats.isr_from_expected(observed, 10.0) == pytest.approx(
            stats.isr(observed, [1000, 2000], [0.002, 0.004]), rel=1e-15)
    assert all(np.isnan(v) for v in stats.isr_from_expected(3, 0.0))


# --- means (docs/methods.md §4) and differences of means (Welch) ---------------------------------------

def test_mean_ci_hand_worked():
    # 1, 2, 3, 4: mean 2.5, sd sqrt(5/3); t(0.975; 3) = 3.182446305284263
    k, m, lo, up = stats.mean_ci([1, 2, 3, 4, np.nan])  # missing values are left out
    half = 3.182446305284263 * np.sqrt(5 / 3) / 2
    assert k == 4 and m == 2.5
    assert (lo, up) == pytest.approx((2.5 - half, 2.5 + half), rel=1e-12)
    assert stats.mean_ci([5.0])[0:2] == (1, 5.0) and np.isnan(stats.mean_ci([5.0])[2])
    assert stats.mean_ci([])[0] == 0


def test_welch_difference_hand_worked():
    # participants' changes −2, −4, −3 (mean −3, variance 1); others 0, 1, −1, 0 (mean 0, variance 2/3)
    # se² = 1/3 + (2/3)/4 = 0.5; df = 0.25 / ((1/3)²/2 + (1/6)²/3) = 27/7
    d, lo, up, df = stats.welch_difference_ci([-2, -4, -3], [0, 1, -1, 0])
    assert d == pytest.approx(-3.0)
    assert df == pytest.approx(27 / 7)
    assert (lo, up) == pytest.approx((-4.99225, -1.00775), abs=1e-4)
    assert stats.welch_difference_ci([1.0], [0.0, 1.0])[1:3] == (pytest.approx(np.nan, nan_ok=True),) * 2


# --- judgement labels (docs/design.md §10) -------------------------------------------------------------------

def test_judgement_and_change_by_polarity():
    comp = np.array([stats.SIGNIFICANTLY_HIGHER, stats.SIGNIFICANTLY_LOWER, stats.NOT_SIGNIFICANT,
                     stats.SIGNIFICANTLY_HIGHER, stats.SIGNIFICANTLY_LOWER, np.nan], dtype=object)
    pol = np.array(["higher_better", "lower_better", "lower_better", None, None, "higher_better"], dtype=object)
    assert stats.judgement(comp, pol).tolist() == ["良い", "良い", "差なし", "高い", "低い", None]
    ch = stats.change_judgement_by_polarity([0.5, 0.5, -0.5, -0.1, np.nan], [1.0, 1.0, -0.1, 0.1, 1.0],
                                            ["higher_better", "lower_better", None, "lower_better", None])
    assert ch[:4].tolist() == ["改善", "悪化", "減少", "変化なし"] and pd.isna(ch[4])


def test_pref_standard_means_the_same_in_every_notebook_module():
    # notebooks resolve their standard population through hsutils.analysis.areas (notebook.start); its "pref"
    # is the registry's, the prefecture's population of the year
    from hsutils.analysis import areas

    strata = _pref_strata()
    expected = stats.standard_population("pref", bands=None, data=strata, fy=2024)
    resolved = areas.standard_population("pref", strata, fy=2024, bands=list(expected.index))
    pd.testing.assert_series_equal(resolved.weights, expected, check_names=False)
    assert resolved.note == "標準人口: " + stats.standard_population_label("pref", fy=2024)
    with pytest.raises(ParameterError):  # without the data "pref" cannot be built
        areas.standard_population("pref")


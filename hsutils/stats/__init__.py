"""Proportions, rates, direct and indirect standardisation, confidence intervals, funnel limits
and comparisons (docs/design.md §4, §5; formulas and edge cases: docs/methods.md).

Conventions (docs/design.md §4):

* Every public function accepts scalars, numpy arrays or pandas Series and broadcasts like
  numpy (positionally; pandas indexes are *not* aligned). A scalar result is a Python float, an
  array result a numpy array, and a 1-d result whose input contained a Series is a Series with
  that Series' index.
* Numbers are always floats (NaN where undefined), never strings. Only the comparison helpers
  (`compare_to_benchmark`, `funnel_significance`, `change_judgement`) return Japanese labels.
* A confidence level is a fraction (0.95, 0.998). As in docs/methods.md §0, a value above 1 and at
  most 100 is read as a percentage (95 -> 0.95, 99.8 -> 0.998). Unlike PHEindicatormethods, levels
  below 0.9 are accepted (they are legitimate, just unusual).
* Multipliers scale the value and both limits; they never enter the statistics (docs/methods.md §0).

Grouped functions (`proportion_grouped`, `rate_grouped`, `dsr_grouped`, `isr_grouped`) take a
tidy frame (one row per group × stratum) and return one row per group with `value`, `lower`,
`upper`, `statistic`, `method` and `conf`, as PHEindicatormethods does (docs/methods.md §0). They
are group-by sums plus numpy: no Python loop over groups.

Empty strata (one rule, docs/methods.md §5 and §8): PHEindicatormethods refuses a stratum with
population 0 in a DSR. Our strata tables have such strata (no 90+ men in a small district), so a
stratum with population 0 and no events is *left out together with its standard weight*: the
DSR is the one PHEindicatormethods computes after removing that row (the weights of the remaining
strata are renormalised). A stratum with population 0 but events > 0 is an error, and so is a
stratum with population but no standard weight. The indirect method needs no rule: a stratum
with population 0 has expected count 0 (docs/methods.md §6). The same rule is used by `dsr`,
`dsr_grouped` and the indicator tables (`hsutils.analysis.indicators.indicator_table`).

Standard populations (docs/rules.md §8, docs/design.md §5): one registry behind `standard_population`:
"H27" (平成27年モデル人口, the default), "S60" (昭和60年モデル人口), a user-supplied Series,
two-column DataFrame or CSV file, and "pref" = the population of the prefecture taken from the
data: the 特定健診 対象者 (国保 40–74, denominator of `kenshin_rate`) plus the 後期高齢者
(75+, denominator of `kouki_kenshin_rate`) by age band in one fiscal year (the latest one when
none is given), sexes combined. "pref" means this everywhere (overview, evaluation, districts).

References: Wilson (1927); Newcombe (1998); Breslow & Day (1987) for Byar's method;
Armitage & Berry (2002) for exact Poisson limits; Dobson et al. (1991); Spiegelhalter (2005);
Welch (1947) and Satterthwaite (1946) for the difference of two means.
The same conventions are used by England's PHEindicatormethods (cross-checked in the tests).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special
from scipy.stats import chi2, norm
from scipy.stats import gamma as gamma_dist
from scipy.stats import t as student_t

from hsutils.core.errors import ParameterError
from hsutils.core.schema import AGE_BANDS

__all__ = [
    "SMALL_COUNT_LIMIT",
    "METHOD_WILSON", "METHOD_EXACT", "METHOD_BYAR", "METHOD_DOBSON", "METHOD_NEWCOMBE",
    "SIGNIFICANTLY_HIGHER", "NOT_SIGNIFICANT", "SIGNIFICANTLY_LOWER",
    "FUNNEL_HIGH_998", "FUNNEL_HIGH_95", "FUNNEL_WITHIN", "FUNNEL_LOW_95", "FUNNEL_LOW_998",
    "CHANGE_IMPROVED", "CHANGE_NONE", "CHANGE_WORSENED", "CHANGE_INCREASED", "CHANGE_DECREASED",
    "JUDGEMENT_BETTER", "JUDGEMENT_SAME", "JUDGEMENT_WORSE", "JUDGEMENT_HIGHER", "JUDGEMENT_LOWER",
    "JUDGEMENT_NONE", "HIGHER_BETTER", "LOWER_BETTER", "POLARITY_LABELS", "PREF_STANDARD",
    "H27_STANDARD_POPULATION", "S60_STANDARD_POPULATION", "STANDARD_POPULATION_LABELS",
    "PREF_STANDARD_INDICATORS",
    "normalise_conf", "z_value",
    "proportion_ci", "proportion_grouped", "exact_poisson_limits", "byar_limits", "count_limits",
    "count_method", "rate_ci", "rate_grouped", "dsr", "dsr_grouped", "isr", "isr_from_expected",
    "isr_grouped", "mean_ci", "welch_difference_ci", "per_capita_grouped", "cost_ratio_grouped", "cost_sums", "per_capita_from_sums",
    "cost_ratio_from_sums",
    "funnel_limits", "funnel_column_suffix", "funnel_significance",
    "proportion_difference_ci", "compare_to_benchmark", "judgement", "change_judgement",
    "change_judgement_by_polarity", "standard_population", "standard_population_label",
]

#: Counts below this use exact Poisson limits; at or above it Byar's (docs/methods.md §1c).
#: A DSR whose total count is below it is not calculated (docs/methods.md §5).
SMALL_COUNT_LIMIT = 10

# Method labels written into area tables (docs/design.md §4: `method` column).
METHOD_WILSON = "Wilson"
METHOD_EXACT = "exact Poisson"
METHOD_BYAR = "Byar"
METHOD_DOBSON = "Dobson"
METHOD_NEWCOMBE = "Newcombe hybrid score"
METHOD_STUDENT_T = "Student's t-distribution"
METHOD_WELCH = "Welch t"

# Comparison with a benchmark (docs/design.md §5, §10).
SIGNIFICANTLY_HIGHER = "有意に高い"
NOT_SIGNIFICANT = "有意差なし"
SIGNIFICANTLY_LOWER = "有意に低い"

# Funnel plot significance (docs/methods.md §7a/§7b); ordered from highest to lowest.
FUNNEL_HIGH_998 = "99.8%限界より高い"
FUNNEL_HIGH_95 = "95%限界より高い"
FUNNEL_WITHIN = "限界内"
FUNNEL_LOW_95 = "95%限界より低い"
FUNNEL_LOW_998 = "99.8%限界より低い"

# Year-on-year judgement (docs/design.md §5).
CHANGE_IMPROVED = "改善"
CHANGE_NONE = "変化なし"
CHANGE_WORSENED = "悪化"
CHANGE_INCREASED = "増加"
CHANGE_DECREASED = "減少"

# Judgement of a comparison for a reader (docs/design.md §10): with a polarity 良い / 差なし / 悪い,
# without one 高い / 差なし / 低い; 判定なし where there is no comparison (missing, suppressed).
JUDGEMENT_BETTER = "良い"
JUDGEMENT_SAME = "差なし"
JUDGEMENT_WORSE = "悪い"
JUDGEMENT_HIGHER = "高い"
JUDGEMENT_LOWER = "低い"
JUDGEMENT_NONE = "判定なし"

# Polarity of an indicator (hsutils.analysis.indicators.Indicator.polarity); None = no judgement.
HIGHER_BETTER = "higher_better"
LOWER_BETTER = "lower_better"
POLARITY_LABELS = {HIGHER_BETTER: "高いほど良い", LOWER_BETTER: "低いほど良い"}


# ---------------------------------------------------------------------------------------------
# Input/output helpers


def normalise_conf(conf) -> float:
    """One confidence level as a fraction in (0, 1]; 95 -> 0.95 (docs/methods.md §0)."""
    try:
        c = float(conf)
    except (TypeError, ValueError):
        raise ParameterError(f"信頼水準 {conf!r} は数値で指定してください（例: 0.95）。") from None
    if 1 < c <= 100:
        c = c / 100
    if not 0 < c <= 1:
        raise ParameterError(f"信頼水準 {conf!r} は 0 より大きく 1 以下（または 95 のような百分率）で指定してください。")
    return c


def _conf_levels(conf) -> tuple[float, ...]:
    """One level or a sequence of levels (funnel plots)."""
    if np.ndim(conf) == 0:
        return (normalise_conf(conf),)
    levels = tuple(normalise_conf(c) for c in conf)
    if not levels:
        raise ParameterError("信頼水準が指定されていません。")
    return levels


def z_value(conf) -> float:
    """Two-sided normal quantile: 1.959963984540054 at 95 %, 3.090232306167813 at 99.8 %."""
    c = normalise_conf(conf)
    return float(norm.ppf(c + (1 - c) / 2))


def _series_index(*args):
    """Index of the first pandas Series among the inputs (used to wrap 1-d results)."""
    for a in args:
        if isinstance(a, pd.Series):
            return a.index
    return None


def _as_float(a) -> np.ndarray:
    if isinstance(a, (pd.Series, pd.Index)):
        return pd.to_numeric(a, errors="raise").to_numpy(dtype=float, na_value=np.nan)
    return np.asarray(a, dtype=float)


def _broadcast(*args) -> list[np.ndarray]:
    arrays = [_as_float(a) for a in args]
    try:
        return list(np.broadcast_arrays(*arrays))
    except ValueError:
        shapes = ", ".join(str(a.shape) for a in arrays)
        raise ParameterError(f"入力の長さが一致しません（形状: {shapes}）。") from None


def _wrap(arr, index):
    """Python float for a 0-d result, Series when the input had one, else ndarray."""
    arr = np.asarray(arr)
    if arr.ndim == 0:
        return float(arr)
    if index is not None and arr.ndim == 1 and len(index) == len(arr):
        return pd.Series(arr, index=index)
    return arr


def _wrap_labels(labels: np.ndarray, index):
    if labels.ndim == 0:
        v = labels.item()
        return v
    if index is not None and labels.ndim == 1 and len(index) == len(labels):
        return pd.Series(labels, index=index, dtype=object)
    return labels


def _check_nonnegative(name_ja: str, a: np.ndarray) -> None:
    bad = a < 0  # NaN compares False
    if np.any(bad):
        raise ParameterError(f"{name_ja}に負の値があります（例: {a[bad].flat[0]}）。0 以上の値を指定してください。")


# ---------------------------------------------------------------------------------------------
# Proportions


def proportion_ci(x, n, conf=0.95):
    """Proportion x/n with the Wilson score interval, as fractions (docs/methods.md §2).

    Returns a tuple (p, lower, upper). x = 0 gives lower 0 exactly and x = n gives upper 1.
    n = 0 or a missing x/n gives NaN; x < 0 or x > n is an error. No continuity correction.
    Reference: Wilson EB (1927) JASA 22:209-212; Newcombe & Altman (2000).
    """
    index = _series_index(x, n)
    c = normalise_conf(conf)
    x, n = _broadcast(x, n)
    _check_nonnegative("件数（分子）", x)
    _check_nonnegative("人数（分母）", n)
    if np.any(x > n):
        raise ParameterError("件数（分子）が人数（分母）を超えています。分子・分母を確認してください。")
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = n > 0
        p = np.where(ok, x / np.where(ok, n, 1.0), np.nan)
        if c == 1:  # docs/methods.md §0: level 1 gives [0, 1]
            lower = np.where(ok, 0.0, np.nan)
            upper = np.where(ok, 1.0, np.nan)
        else:
            z = z_value(c)
            z2 = z * z
            half = z * np.sqrt(z2 + 4 * x * (1 - p))
            denom = 2 * (n + z2)
            lower = (2 * x + z2 - half) / denom
            upper = (2 * x + z2 + half) / denom
            # Exact edges (rounding would otherwise leave -1e-17 or 1 - 1e-16).
            lower = np.where(x == 0, 0.0, np.clip(lower, 0.0, 1.0))
            upper = np.where(x == n, 1.0, np.clip(upper, 0.0, 1.0))
            lower = np.where(ok, lower, np.nan)
            upper = np.where(ok, upper, np.nan)
    return _wrap(p, index), _wrap(lower, index), _wrap(upper, index)


def proportion_difference_ci(x1, n1, x2, n2, conf=0.95):
    """Difference of two independent proportions p2 - p1 with Newcombe's hybrid score interval
    (method 10 of Newcombe RG (1998) Stat Med 17:873-890), built from the two Wilson intervals.

    Used for the year-on-year judgement 改善/変化なし/悪化 (docs/design.md §5): x1/n1 is the earlier
    year, x2/n2 the later one. Returns a tuple (difference, lower, upper) as fractions.
    """
    index = _series_index(x1, n1, x2, n2)
    p1, l1, u1 = (np.asarray(v, dtype=float) for v in proportion_ci(_as_float(x1), _as_float(n1), conf))
    p2, l2, u2 = (np.asarray(v, dtype=float) for v in proportion_ci(_as_float(x2), _as_float(n2), conf))
    d = p2 - p1
    lower = d - np.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    upper = d + np.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return _wrap(d, index), _wrap(lower, index), _wrap(upper, index)


def _statistic_label(kind: str, multiplier) -> str:
    """`statistic` column of the grouped functions, worded as PHEindicatormethods (docs/methods.md §0)."""
    m = f"{multiplier:g}" if isinstance(multiplier, (int, float, np.integer, np.floating)) else str(multiplier)
    if kind == "proportion":
        return "percentage" if float(multiplier) == 100 else f"proportion of {m}"
    return f"{kind} per {m}"


def _grouped_frame(sums: pd.DataFrame, group_cols, value, lower, upper, statistic, method, conf) -> pd.DataFrame:
    """The tidy output: group columns, summed inputs, value, lower, upper, statistic, method, conf."""
    out = sums.copy()
    out["value"] = np.asarray(value, dtype=float)
    out["lower"] = np.asarray(lower, dtype=float)
    out["upper"] = np.asarray(upper, dtype=float)
    out["statistic"] = statistic
    out["method"] = method
    out["conf"] = conf
    return out


def proportion_grouped(df, group_cols, x_col, n_col, conf=0.95, multiplier=1):
    """Proportions with Wilson intervals for many groups at once (docs/methods.md §2; grouped data
    as in docs/methods.md §0: x and n are first summed within each group).

    df has one row per group × anything (e.g. sex × age band); group_cols may be empty (one row).
    Returns a DataFrame with the group columns, the sums of x_col and n_col (same names), and
    `value`, `lower`, `upper` (× multiplier: 100 gives percent), `statistic`, `method`
    ("Wilson") and `conf`. A group with n = 0 gives NaN.
    """
    c = normalise_conf(conf)
    sums = _group_sums(df, group_cols, {x_col: df[x_col].to_numpy(), n_col: df[n_col].to_numpy()})
    p, lower, upper = proportion_ci(_as_float(sums[x_col]), _as_float(sums[n_col]), c)
    return _grouped_frame(sums, group_cols, np.asarray(p) * multiplier, np.asarray(lower) * multiplier,
                          np.asarray(upper) * multiplier, _statistic_label("proportion", multiplier),
                          METHOD_WILSON, c)


# ---------------------------------------------------------------------------------------------
# Counts and rates


def exact_poisson_limits(x, conf=0.95):
    """Exact Poisson limits of a count via the chi-square distribution (Armitage & Berry 2002;
    docs/methods.md §1b): lower = chi2_q(α/2; 2x)/2, upper = chi2_q(1 - α/2; 2x + 2)/2.

    x = 0 gives lower 0 (scipy's chi2.ppf with 0 degrees of freedom is NaN, so it is special-cased)
    and upper -ln(α/2) (3.688879454 at 95 %). Returns a tuple (lower, upper) of counts.
    """
    index = _series_index(x)
    c = normalise_conf(conf)
    (x,) = _broadcast(x)
    _check_nonnegative("件数", x)
    alpha = 1 - c
    positive = x > 0
    with np.errstate(invalid="ignore"):
        lower = np.where(positive, chi2.ppf(alpha / 2, np.where(positive, 2 * x, 1.0)) / 2, 0.0)
        upper = chi2.ppf(1 - alpha / 2, 2 * x + 2) / 2
    lower = np.where(np.isnan(x), np.nan, lower)
    return _wrap(lower, index), _wrap(upper, index)


def byar_limits(x, conf=0.95):
    """Byar's approximation to the Poisson limits of a count (Breslow & Day 1987;
    docs/methods.md §1a). Returns a tuple (lower, upper) of counts.

    As in PHEindicatormethods the lower limit is NaN when the formula goes negative (e.g. x = 1 at
    99.8 %) and for x = 0; use `count_limits`, which switches to exact limits below 10.
    """
    index = _series_index(x)
    z = z_value(conf)
    (x,) = _broadcast(x)
    _check_nonnegative("件数", x)
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = x * (1 - 1 / (9 * x) - z / (3 * np.sqrt(x))) ** 3
        lower = np.where(lower < 0, np.nan, lower)
        x1 = x + 1
        upper = x1 * (1 - 1 / (9 * x1) + z / (3 * np.sqrt(x1))) ** 3
    return _wrap(lower, index), _wrap(upper, index)


def count_limits(x, conf=0.95):
    """Confidence limits of a count: exact Poisson when x < 10, Byar's when x >= 10
    (docs/methods.md §1c; the switch is between 9 and 10). Returns a tuple (lower, upper)."""
    index = _series_index(x)
    (x,) = _broadcast(x)
    lower, upper = (np.array(v, dtype=float) for v in byar_limits(x, conf))
    small = x < SMALL_COUNT_LIMIT
    if small.any():  # chi-square quantiles only where needed, once per distinct count: they are the slow part
        distinct, inverse = np.unique(x[small], return_inverse=True)  # counts 0…9: a handful of values
        el, eu = (np.asarray(v) for v in exact_poisson_limits(distinct, conf))
        lower[small], upper[small] = el[inverse], eu[inverse]
    return _wrap(lower, index), _wrap(upper, index)


def count_method(x):
    """Method label used by `count_limits` for each count: "exact Poisson" or "Byar" (NaN for NaN)."""
    index = _series_index(x)
    (x,) = _broadcast(x)
    labels = np.where(x < SMALL_COUNT_LIMIT, METHOD_EXACT, METHOD_BYAR).astype(object)
    labels[np.isnan(x)] = np.nan
    return _wrap_labels(labels, index)


def rate_ci(x, denom, conf=0.95, multiplier=1):
    """Crude rate x/denom × multiplier with the count limits of `count_limits` divided by denom
    (exact for x < 10, Byar's for x >= 10; docs/methods.md §3). Returns (rate, lower, upper).

    x may exceed denom (events per person-year). denom = 0 or missing gives NaN.
    """
    index = _series_index(x, denom)
    x, d = _broadcast(x, denom)
    _check_nonnegative("人口・分母", d)
    lower_count, upper_count = (np.asarray(v) for v in count_limits(x, conf))
    ok = d > 0
    safe = np.where(ok, d, 1.0)
    scale = np.where(ok, multiplier / safe, np.nan)
    return _wrap(x * scale, index), _wrap(lower_count * scale, index), _wrap(upper_count * scale, index)


def rate_grouped(df, group_cols, x_col, n_col, conf=0.95, multiplier=1):
    """Crude rates for many groups at once: x and n summed within each group, then `rate_ci`
    (exact Poisson limits below 10 events, Byar's from 10; docs/methods.md §3, §1c).

    Returns a DataFrame with the group columns, the sums of x_col and n_col, and `value`,
    `lower`, `upper`, `statistic` ("rate per <multiplier>"), `method` ("exact Poisson"/"Byar",
    per group) and `conf`.
    """
    c = normalise_conf(conf)
    sums = _group_sums(df, group_cols, {x_col: df[x_col].to_numpy(), n_col: df[n_col].to_numpy()})
    x = _as_float(sums[x_col])
    value, lower, upper = rate_ci(x, _as_float(sums[n_col]), c, multiplier)
    return _grouped_frame(sums, group_cols, value, lower, upper, _statistic_label("rate", multiplier),
                          np.asarray(count_method(x), dtype=object), c)


# ---------------------------------------------------------------------------------------------
# Direct standardisation (Dobson)


def _dsr_terms(x, n, w):
    """Per-stratum terms of the DSR: (x, w·x/n, x·(w/n)², weight used in Σw, n).

    DSR rules of docs/methods.md §5: missing counts are 0; a missing or negative population is an
    error; a negative standard weight is an error. Empty strata (the module's one rule): a
    stratum with population 0 must have 0 events (else error) and is left out together with its
    weight; a stratum with population needs a standard weight (missing weight is an error).
    w·x/n is computed in that order, so that the indicator tables' published figures keep their
    last digit.
    """
    x = np.where(np.isnan(x), 0.0, x)
    if np.any(np.isnan(n)):
        raise ParameterError("年齢調整率の計算で、人口（分母）に欠損があります。")
    _check_nonnegative("件数", x)
    _check_nonnegative("人口（分母）", n)
    _check_nonnegative("基準人口", w)
    empty = n == 0
    if np.any(empty & (x > 0)):
        raise ParameterError("人口 0 の年齢階級に件数があります。分子・分母の対応を確認してください。")
    if np.any(np.isnan(w) & ~empty):
        raise ParameterError("年齢調整率の計算で、基準人口に欠損があります。年齢階級の対応を確認してください。")
    w_used = np.where(empty, 0.0, w)
    safe_n = np.where(empty, 1.0, n)
    with np.errstate(invalid="ignore"):
        weighted = np.where(empty, 0.0, w_used * x / safe_n)
        variance = np.where(empty, 0.0, x * (w_used / safe_n) ** 2)
    return x, weighted, variance, w_used, n


def _dobson(total, weighted, variance_sum, sum_w, conf, multiplier):
    """Dobson limits from group sums (docs/methods.md §5); NaN when total < 10."""
    total = np.asarray(total, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = weighted / sum_w
        var = variance_sum / sum_w ** 2
        o_lower, o_upper = (np.asarray(v) for v in byar_limits(total, conf))
        step = np.sqrt(var / total)
        lower = value + step * (o_lower - total)
        upper = value + step * (o_upper - total)
    suppressed = ~(total >= SMALL_COUNT_LIMIT)
    value = np.where(suppressed, np.nan, value) * multiplier
    lower = np.where(suppressed, np.nan, lower) * multiplier
    upper = np.where(suppressed, np.nan, upper) * multiplier
    return value, lower, upper


def dsr(x, n, std_pop, conf=0.95, multiplier=1):
    """Directly standardised rate with Dobson's interval (Dobson et al. 1991; docs/methods.md §5).

    x, n and std_pop are aligned by stratum (usually age band) along the last axis, so a 2-d input
    (groups × strata) gives one DSR per group. When x and std_pop are both Series with the same
    labels in another order, std_pop is aligned to x by label; otherwise alignment is positional.

        DSR   = Σ w_i x_i / n_i / Σ w_i × multiplier
        limits = DSR + sqrt(V / O) · (O_L - O, O_U - O) × multiplier,
        V = Σ x_i (w_i / n_i)² / (Σ w_i)², O = Σ x_i, (O_L, O_U) = Byar's limits of O.

    The value and limits are NaN when the total count O is below 10 (O = 10 is published).
    Missing counts are treated as 0. A stratum with population 0 (and no events) is left out
    together with its standard weight (the module's empty-strata rule; docs/methods.md §5, §8), so
    the result equals PHEindicatormethods' DSR after removing that row. A stratum with
    population 0 but events > 0 is an error.

    Returns a tuple (rate, lower, upper).
    """
    index = None
    if isinstance(std_pop, pd.Series) and isinstance(x, pd.Series) and not std_pop.index.equals(x.index):
        if set(std_pop.index) == set(x.index) and std_pop.index.is_unique:
            std_pop = std_pop.reindex(x.index)
    x, n, w = _broadcast(x, n, std_pop)
    if x.ndim == 0:
        x, n, w = x[None], n[None], w[None]
    x, wx, vx, w_used, _ = _dsr_terms(x, n, w)
    value, lower, upper = _dobson(x.sum(-1), wx.sum(-1), vx.sum(-1), w_used.sum(-1),
                                  normalise_conf(conf), multiplier)
    return _wrap(value, index), _wrap(lower, index), _wrap(upper, index)


def _standard_weights(df, std_col, standard, band_col):
    if standard is None:
        if std_col not in df.columns:
            raise ParameterError(f"基準人口の列 {std_col!r} がありません。standard と band_col を指定してください。")
        return pd.to_numeric(df[std_col]).to_numpy(dtype=float)
    if band_col is None or band_col not in df.columns:
        raise ParameterError("standard を指定する場合は、年齢階級の列名 band_col を指定してください。")
    labels = df[band_col].astype(object)
    if labels.isna().any():
        raise ParameterError(f"年齢階級の列 {band_col!r} に欠損があります。")
    # Weights for exactly the bands present (e.g. "90+" = "90-94" + "95+" of H27).
    weights = standard_population(standard, bands=list(pd.unique(labels)))
    return labels.map(weights.to_dict()).to_numpy(dtype=float, na_value=np.nan)


def _group_sums(df: pd.DataFrame, group_cols: Sequence[str], columns: dict) -> pd.DataFrame:
    """Group-by sums of the given arrays (no Python loop over groups)."""
    group_cols = list(group_cols)
    terms = pd.DataFrame(columns, index=df.index)
    if not group_cols:
        return terms.sum().to_frame().T
    for g in group_cols:
        terms[g] = df[g]
    return terms.groupby(group_cols, sort=True, observed=True, dropna=False).sum().reset_index()


def dsr_grouped(df, group_cols, x_col, n_col, std_col="std_pop", conf=0.95, multiplier=1, *,
                standard=None, band_col=None):
    """Directly standardised rates for many groups at once (areas × indicators × ...), computed
    with group-by sums (docs/methods.md §5, same rules as `dsr`).

    df has one row per group × stratum. The standard weights come from the column `std_col`, or,
    when `standard` is given ("H27", "S60", a Series or a DataFrame; see `standard_population`),
    from the age band column `band_col` (each band present gets the standard's weight for it, so
    "90+" of H27 is "90-94" + "95+").

    Returns a DataFrame with the group columns and `value`, `lower`, `upper`, `total_count`,
    `total_pop`, `statistic` ("dsr per <multiplier>"), `method` ("Dobson") and `conf`.
    value/lower/upper are NaN when total_count < 10. Strata with population 0 follow the
    module's empty-strata rule (left out with their weight).
    """
    c = normalise_conf(conf)
    w = _standard_weights(df, std_col, standard, band_col)
    x = _as_float(df[x_col])
    n = _as_float(df[n_col])
    x, wx, vx, w_used, n = _dsr_terms(x, n, w)
    sums = _group_sums(df, group_cols, {"_x": x, "_wx": wx, "_vx": vx, "_w": w_used, "_n": n})
    value, lower, upper = _dobson(sums["_x"].to_numpy(), sums["_wx"].to_numpy(), sums["_vx"].to_numpy(),
                                  sums["_w"].to_numpy(), c, multiplier)
    out = sums[list(group_cols)].copy()
    out["value"] = value
    out["lower"] = lower
    out["upper"] = upper
    out["total_count"] = sums["_x"].to_numpy()
    out["total_pop"] = sums["_n"].to_numpy()
    out["statistic"] = _statistic_label("dsr", multiplier)
    out["method"] = METHOD_DOBSON
    out["conf"] = c
    return out


# ---------------------------------------------------------------------------------------------
# Indirect standardisation (標準化該当比)


def _isr_from_totals(observed, expected, conf, refvalue):
    lower_count, upper_count = (np.asarray(v) for v in count_limits(observed, conf))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(expected > 0, refvalue / np.where(expected > 0, expected, 1.0), np.nan)
    return observed * scale, lower_count * scale, upper_count * scale


def isr_from_expected(observed, expected, conf=0.95, *, refvalue=1):
    """標準化該当比 O/E from the observed total and an expected count already summed over the
    strata (E = Σ n_i · ref_rate_i; docs/methods.md §6): the count limits of O (exact Poisson for
    O < 10, Byar's for O >= 10) divided by E, × refvalue. E = 0 or missing gives NaN.
    Used where the expected counts come from group-by sums (the indicator tables).
    Returns a tuple (ratio, lower, upper).
    """
    index = _series_index(observed, expected)
    obs, e = _broadcast(observed, expected)
    _check_nonnegative("観察数", obs)
    _check_nonnegative("期待数", e)
    value, lower, upper = _isr_from_totals(obs, e, normalise_conf(conf), refvalue)
    return _wrap(value, index), _wrap(lower, index), _wrap(upper, index)


def isr(observed, n, ref_rate, conf=0.95, *, refvalue=1):
    """Indirectly standardised ratio 標準化該当比 O/E (docs/methods.md §6).

    n and ref_rate are per stratum (last axis); E = Σ n_i · ref_rate_i. `observed` is either the
    per-stratum counts (same number of dimensions as n; summed, NaN dropped) or their total (one
    dimension less, e.g. a scalar). Limits are the count limits of O (exact Poisson for O < 10,
    Byar's for O >= 10) divided by E. Missing n or ref_rate counts as 0 (as PHEindicatormethods);
    E = 0 gives NaN. refvalue scales the result (100 for an SMR × 100).

    Returns a tuple (ratio, lower, upper).
    """
    n_arr, r_arr = _broadcast(n, ref_rate)
    if n_arr.ndim == 0:
        n_arr, r_arr = n_arr[None], r_arr[None]
    expected_terms = np.nan_to_num(n_arr, nan=0.0) * np.nan_to_num(r_arr, nan=0.0)
    expected = expected_terms.sum(-1)
    obs = _as_float(observed)
    if obs.ndim == expected_terms.ndim:
        obs = np.nansum(np.broadcast_to(obs, np.broadcast_shapes(obs.shape, expected_terms.shape)), axis=-1)
    elif obs.ndim != expected_terms.ndim - 1:
        raise ParameterError("観察数 observed は年齢階級別の件数か、その合計で指定してください。")
    obs, expected = np.broadcast_arrays(obs, expected)
    _check_nonnegative("観察数", obs)
    value, lower, upper = _isr_from_totals(obs, expected, normalise_conf(conf), refvalue)
    # A Series of per-group totals keeps its index; per-stratum Series are reduced to a scalar.
    index = _series_index(observed) if obs.ndim == 1 and expected_terms.ndim == 2 else None
    return _wrap(value, index), _wrap(lower, index), _wrap(upper, index)


def isr_grouped(df, group_cols, observed_col, n_col, ref_rate_col, conf=0.95, *, refvalue=1):
    """標準化該当比 for many groups at once (group-by sums; docs/methods.md §6, same rules as `isr`).

    df has one row per group × stratum with the local count, local population and the reference
    rate of that stratum (e.g. the prefecture's rate by sex × age band, merged by the caller).

    Returns a DataFrame with the group columns and `value`, `lower`, `upper`, `observed`,
    `expected`, `statistic` ("indirectly standardised ratio x <refvalue>"), `method`
    ("exact Poisson" for O < 10, "Byar" otherwise) and `conf`.
    """
    c = normalise_conf(conf)
    obs = np.nan_to_num(_as_float(df[observed_col]), nan=0.0)
    _check_nonnegative("観察数", obs)
    expected = np.nan_to_num(_as_float(df[n_col]), nan=0.0) * np.nan_to_num(_as_float(df[ref_rate_col]), nan=0.0)
    sums = _group_sums(df, group_cols, {"_o": obs, "_e": expected})
    o = sums["_o"].to_numpy()
    e = sums["_e"].to_numpy()
    value, lower, upper = _isr_from_totals(o, e, c, refvalue)
    out = sums[list(group_cols)].copy()
    out["value"] = value
    out["lower"] = lower
    out["upper"] = upper
    out["observed"] = o
    out["expected"] = e
    out["statistic"] = f"indirectly standardised ratio x {refvalue:g}"
    out["method"] = np.where(o < SMALL_COUNT_LIMIT, METHOD_EXACT, METHOD_BYAR)
    out["conf"] = c
    return out


# ---------------------------------------------------------------------------------------------
# Costs: per-capita means over person-years and the indirectly standardised cost ratio


METHOD_LINEARISED = "linearised ratio estimator"
METHOD_LOG_LINEARISED = "linearised ratio estimator (log scale)"


def _residual_ss(c2, cw, w2, ratio):
    """Σ (c − R·w)² from the group sums Σc², Σc·w, Σw² (no pass over persons)."""
    return np.maximum(c2 - 2 * ratio * cw + ratio * ratio * w2, 0.0)


def _cost_terms(df, cost_col, years_col):
    c = np.nan_to_num(_as_float(df[cost_col]), nan=0.0)
    w = np.nan_to_num(_as_float(df[years_col]), nan=0.0)
    _check_nonnegative("医療費", c)
    _check_nonnegative("被保険者年", w)
    return c, w, {"_n": (w > 0).astype(float), "_w": w, "_c": c, "_c2": c * c, "_cw": c * w, "_w2": w * w}


#: the group sums of person rows the cost statistics are computed from (`cost_sums`)
COST_TERMS = ("_n", "_w", "_c", "_c2", "_cw", "_w2")


def cost_sums(df, group_cols, cost_col, years_col) -> pd.DataFrame:
    """The group sums (`COST_TERMS`: persons with person-years > 0, Σw, Σc, Σc², Σc·w, Σw²) of person
    rows (cost c, person-years w) that `per_capita_grouped` and `cost_ratio_grouped` use. Sums of
    disjoint parts (e.g. one per municipality) add up to the sums of the whole: computed per part
    and summed, they give the statistics of the whole without its person rows
    (`per_capita_from_sums`, `cost_ratio_from_sums`)."""
    _, _, terms = _cost_terms(df, cost_col, years_col)
    return _group_sums(df, group_cols, terms)


def per_capita_grouped(df, group_cols, cost_col, years_col, conf=0.95):
    """年間一人当たり医療費 per group: total cost ÷ insured person-years (docs/methods.md §13.1).

    df has one row per person (× fiscal year) with the person's cost and person-years (months
    enrolled ÷ 12). The interval is the linearised (Taylor) variance of the ratio estimator
    R = Σc / Σw: Var(R) = n/(n − 1) · Σ(c − R·w)² / (Σw)², normal limits, the lower one not below 0.
    Fewer than 2 persons: no interval.

    Returns the group columns and `persons`, `person_years`, `cost`, `value`, `lower`, `upper`,
    `method`, `conf`.
    """
    return _per_capita(cost_sums(df, group_cols, cost_col, years_col), group_cols, conf)


def per_capita_from_sums(sums, group_cols, conf=0.95):
    """`per_capita_grouped` from `cost_sums` rows of finer groups (summed to `group_cols` first)."""
    return _per_capita(_group_sums(sums, group_cols, {k: sums[k].to_numpy(float) for k in COST_TERMS}),
                       group_cols, conf)


def _per_capita(sums, group_cols, conf):
    n, w, c = (sums[k].to_numpy(float) for k in ("_n", "_w", "_c"))
    z = z_value(conf)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(w > 0, c / w, np.nan)
        ss = _residual_ss(sums["_c2"].to_numpy(float), sums["_cw"].to_numpy(float), sums["_w2"].to_numpy(float),
                          np.nan_to_num(value))
        se = np.where(n >= 2, np.sqrt(n / np.maximum(n - 1, 1) * ss) / w, np.nan)
    out = sums[list(group_cols)].copy()
    out["persons"] = n.astype(np.int64)
    out["person_years"] = w
    out["cost"] = c
    out["value"] = value
    out["lower"] = np.maximum(value - z * se, 0.0)
    out["upper"] = value + z * se
    out["method"] = METHOD_LINEARISED
    out["conf"] = normalise_conf(conf)
    return out


def cost_ratio_grouped(df, group_cols, stratum_cols, cost_col, years_col, ref_col, conf=0.95, *, refvalue=1):
    """Indirectly standardised cost ratio O/E per group — the 地域差指数 of docs/rules.md §13.2
    (docs/methods.md §13.2).

    df: one row per person (× fiscal year): cost c, person-years w and the reference's per-capita
    cost r of the person's stratum (sex × age band, merged by the caller). O = Σc, E = Σ w·r.
    E is treated as known (the reference is large); Var(O) = Σ_strata n_s/(n_s − 1) · Σ(c − R_s·w)²
    with R_s the group's own per-capita cost in the stratum (a stratum with one person adds 0).
    Limits on the log scale: (O/E)·exp(∓ z·√Var(O)/O). O = 0 gives ratio 0 and no upper limit;
    E = 0 gives NaN.

    Returns the group columns and `persons`, `observed`, `expected`, `value`, `lower`, `upper`,
    `method`, `conf`.
    """
    c_arr, w_arr, terms = _cost_terms(df, cost_col, years_col)
    terms["_e"] = w_arr * np.nan_to_num(_as_float(df[ref_col]), nan=0.0)
    st = _group_sums(df, list(group_cols) + list(stratum_cols), terms)
    return _cost_ratio(st, group_cols, conf, refvalue)


def cost_ratio_from_sums(sums, group_cols, stratum_cols, ref_col, conf=0.95, *, refvalue=1):
    """`cost_ratio_grouped` from `cost_sums` rows of finer groups (summed to group × stratum first) with
    the stratum's reference per-capita cost `ref_col` (E = r · Σw per stratum)."""
    terms = {k: sums[k].to_numpy(float) for k in COST_TERMS}
    terms["_e"] = sums["_w"].to_numpy(float) * np.nan_to_num(_as_float(sums[ref_col]), nan=0.0)
    st = _group_sums(sums, list(group_cols) + list(stratum_cols), terms)
    return _cost_ratio(st, group_cols, conf, refvalue)


def _cost_ratio(st, group_cols, conf, refvalue):
    n, w, c = (st[k].to_numpy(float) for k in ("_n", "_w", "_c"))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(w > 0, c / w, 0.0)
    ss = _residual_ss(st["_c2"].to_numpy(float), st["_cw"].to_numpy(float), st["_w2"].to_numpy(float), r)
    st["_var"] = np.where(n >= 2, n / np.maximum(n - 1, 1), 1.0) * ss
    st["_n"] = n
    g = _group_sums(st, group_cols, {"_n": st["_n"], "_c": st["_c"], "_e": st["_e"], "_var": st["_var"]})
    o, e, var = (g[k].to_numpy(float) for k in ("_c", "_e", "_var"))
    z = z_value(conf)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(e > 0, o / e, np.nan)
        se_log = np.where(o > 0, np.sqrt(var) / o, np.nan)
        lower = np.where(o > 0, ratio * np.exp(-z * se_log), np.where(e > 0, 0.0, np.nan))
        upper = ratio * np.exp(z * se_log)
    out = g[list(group_cols)].copy()
    out["persons"] = g["_n"].to_numpy().astype(np.int64)
    out["observed"] = o
    out["expected"] = e
    out["value"] = ratio * refvalue
    out["lower"] = lower * refvalue
    out["upper"] = upper * refvalue
    out["method"] = METHOD_LOG_LINEARISED
    out["conf"] = normalise_conf(conf)
    return out


# ---------------------------------------------------------------------------------------------
# Means and differences of means


def mean_ci(values, conf=0.95) -> tuple[int, float, float, float]:
    """Mean of one group with the Student t interval (docs/methods.md §4):
    mean ∓ t_q(1 − α/2; k − 1) · sd / sqrt(k), sd with divisor k − 1; limits not truncated.

    Unlike PHEindicatormethods (where one NA makes the result NA), missing values are left out:
    they are persons without a measurement in one of the years, not unknown members of the sum.
    Returns (k, mean, lower, upper) with k the number of values used; NaN limits when k < 2,
    NaN mean when k = 0.
    """
    c = normalise_conf(conf)
    x = _as_float(values).ravel()
    x = x[np.isfinite(x)]
    k = len(x)
    if k == 0:
        return 0, np.nan, np.nan, np.nan
    m = float(x.mean())
    if k < 2:
        return k, m, np.nan, np.nan
    half = float(student_t.ppf(0.5 + c / 2, k - 1) * x.std(ddof=1) / np.sqrt(k))
    return k, m, m - half, m + half


def welch_difference_ci(a, b, conf=0.95) -> tuple[float, float, float, float]:
    """Difference of means mean(a) − mean(b) with Welch's t interval (unequal variances;
    Welch 1947, degrees of freedom by Satterthwaite 1946):

        d ∓ t_q(1 − α/2; df) · sqrt(s_a²/k_a + s_b²/k_b),
        df = (s_a²/k_a + s_b²/k_b)² / ((s_a²/k_a)²/(k_a − 1) + (s_b²/k_b)²/(k_b − 1)).

    Missing values are left out (as in `mean_ci`). Returns (difference, lower, upper, df); NaN
    limits when a group has fewer than 2 values or both variances are 0; all NaN when a group
    is empty.
    """
    c = normalise_conf(conf)
    a, b = (_as_float(v).ravel() for v in (a, b))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return np.nan, np.nan, np.nan, np.nan
    d = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return d, np.nan, np.nan, np.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    if se == 0:
        return d, np.nan, np.nan, np.nan
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(student_t.ppf(0.5 + c / 2, df) * se)
    return d, d - half, d + half, float(df)


# ---------------------------------------------------------------------------------------------
# Funnel plots


def funnel_column_suffix(conf) -> str:
    """Column suffix of a funnel level: 0.95 -> "95_0", 0.998 -> "99_8" (so `lower_95_0`)."""
    return f"{normalise_conf(conf) * 100:.1f}".replace(".", "_")


def _poisson_lower_count(mu: np.ndarray, tail: float) -> np.ndarray:
    """Continuous lower control limit O_lo of an observed count with Poisson mean mu:
    P(X <= O_lo | mu) = tail, extended to non-integer O by the regularised incomplete gamma
    function (P(X <= O) = Q(O + 1, mu)). At integer O this is exactly the chi-square closed form
    mu = chi2_q(1 - tail; 2O + 2)/2 used for the points of PHEindicatormethods (docs/methods.md §7b).
    Clipped at 0 when even O = 0 has P(X <= 0) = exp(-mu) >= tail. Vectorised bisection."""
    lo = np.zeros_like(mu)
    hi = mu + 10 * np.sqrt(mu) + 20
    for _ in range(100):
        mid = (lo + hi) / 2
        below = special.gammaincc(mid + 1, mu) < tail  # P(X <= mid) still below the tail
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    out = (lo + hi) / 2
    return np.where(np.exp(-mu) >= tail, 0.0, out)


def _poisson_upper_count(mu: np.ndarray, tail: float) -> np.ndarray:
    """Continuous upper control limit O_hi: P(X >= O_hi | mu) = tail, i.e. P(O_hi, mu) = tail
    (regularised lower incomplete gamma); at integer O this is mu = chi2_q(tail; 2O)/2
    (docs/methods.md §7b). Vectorised bisection."""
    lo = np.zeros_like(mu)
    hi = mu + 10 * np.sqrt(mu) + 20
    for _ in range(100):
        mid = (lo + hi) / 2
        above = special.gammainc(mid, mu) > tail  # P(X >= mid) still above the tail
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    return (lo + hi) / 2


def funnel_limits(n, target, conf=(0.95, 0.998), kind="proportion"):
    """Funnel plot control limits around a target (docs/methods.md §7; Spiegelhalter 2005).

    Returns a DataFrame with one row per n and columns `n`, `target`, then `lower_<s>` and
    `upper_<s>` for each level, where <s> is `funnel_column_suffix(level)`: with the default
    levels `lower_95_0`, `upper_95_0`, `lower_99_8`, `upper_99_8`.

    kind="proportion": n is the denominator and target a fraction;
        limits = target ∓ z·sqrt(target(1 - target)/n), clipped to [0, 1] (docs/methods.md §7a:
        the Wilson-based funnel of PHEindicatormethods reduces to this).
    kind="ratio": n is the expected count E and target the benchmark ratio (1 for 標準化該当比);
        the observed count is Poisson with mean mu = target·E and the limits of O/E are
        O_lo/E and O_hi/E with P(X <= O_lo) = P(X >= O_hi) = (1 - level)/2. The limits are
        computed on the continuous scale of E with the incomplete gamma function, which at
        integer O coincides with the chi-square closed form of docs/methods.md §7b, so the curves
        pass exactly through the points PHEindicatormethods plots.
    n = 0 or missing gives NaN limits.
    """
    levels = _conf_levels(conf)
    n_arr = np.atleast_1d(_as_float(n)).astype(float)
    if n_arr.ndim != 1:
        raise ParameterError("funnel_limits の n は 1 次元で指定してください。")
    _check_nonnegative("n", n_arr)
    t = float(target)
    ok = n_arr > 0
    safe_n = np.where(ok, n_arr, 1.0)
    out = pd.DataFrame({"n": n_arr, "target": t})
    for level in levels:
        suffix = funnel_column_suffix(level)
        if kind == "proportion":
            if not 0 <= t <= 1:
                raise ParameterError(f"割合の目標値 target は 0〜1 の割合で指定してください（{target!r}）。")
            half = z_value(level) * np.sqrt(t * (1 - t) / safe_n)
            lower = np.clip(t - half, 0.0, 1.0)
            upper = np.clip(t + half, 0.0, 1.0)
        elif kind == "ratio":
            if not t > 0:
                raise ParameterError(f"比の目標値 target は正の値で指定してください（{target!r}）。")
            tail = (1 - level) / 2
            mu = t * safe_n
            lower = _poisson_lower_count(mu, tail) / safe_n
            upper = _poisson_upper_count(mu, tail) / safe_n
        else:
            raise ParameterError(f"kind は 'proportion' か 'ratio' で指定してください（{kind!r}）。")
        out[f"lower_{suffix}"] = np.where(ok, lower, np.nan)
        out[f"upper_{suffix}"] = np.where(ok, upper, np.nan)
    return out


def funnel_significance(x, n, target, kind="proportion"):
    """Position of each point relative to the 95 % and 99.8 % funnel limits
    (docs/methods.md §7a proportions, §7b ratios). Returns Japanese labels: FUNNEL_HIGH_998
    ("99.8%限界より高い"), FUNNEL_HIGH_95, FUNNEL_WITHIN ("限界内"), FUNNEL_LOW_95, FUNNEL_LOW_998;
    NaN where undefined (n = 0 or missing).

    kind="proportion": x cases out of n; q = x/n is compared with target ∓ z·sqrt(t(1-t)/n)
        (unclipped), checking 99.8 % low, 95 % low, 99.8 % high, 95 % high in that order.
    kind="ratio": x = observed count O, n = expected count E; the count limits of O at 95 % and
        99.8 % (exact for O < 10, Byar's for O >= 10) divided by E are compared with target:
        lower99.8/E > target, lower95/E > target, upper99.8/E < target, upper95/E < target.
    """
    index = _series_index(x, n)
    x, n = _broadcast(x, n)
    t = float(target)
    ok = (n > 0) & ~np.isnan(x)
    safe_n = np.where(ok, n, 1.0)
    labels = np.full(x.shape, FUNNEL_WITHIN, dtype=object)
    if kind == "proportion":
        q = x / safe_n
        se = np.sqrt(t * (1 - t) / safe_n)
        z95, z998 = z_value(0.95), z_value(0.998)
        conditions = [
            (q < t - z998 * se, FUNNEL_LOW_998),
            (q < t - z95 * se, FUNNEL_LOW_95),
            (q > t + z998 * se, FUNNEL_HIGH_998),
            (q > t + z95 * se, FUNNEL_HIGH_95),
        ]
    elif kind == "ratio":
        xs = np.where(ok, x, 0.0)
        l95, u95 = (np.asarray(v) / safe_n for v in count_limits(xs, 0.95))
        l998, u998 = (np.asarray(v) / safe_n for v in count_limits(xs, 0.998))
        conditions = [
            (l998 > t, FUNNEL_HIGH_998),
            (l95 > t, FUNNEL_HIGH_95),
            (u998 < t, FUNNEL_LOW_998),
            (u95 < t, FUNNEL_LOW_95),
        ]
    else:
        raise ParameterError(f"kind は 'proportion' か 'ratio' で指定してください（{kind!r}）。")
    assigned = np.zeros(x.shape, dtype=bool)
    for condition, label in conditions:  # first matching rule wins (docs/methods.md §7a order)
        hit = condition & ~assigned
        labels[hit] = label
        assigned |= hit
    labels[~ok] = np.nan
    return _wrap_labels(labels, index)


# ---------------------------------------------------------------------------------------------
# Comparisons


def compare_to_benchmark(lower, upper, benchmark):
    """Significance against a benchmark by the interval (docs/design.md §5): "有意に高い" when the whole
    interval lies above the benchmark (lower > benchmark), "有意に低い" when it lies below
    (upper < benchmark), otherwise "有意差なし"; NaN when a limit or the benchmark is missing.
    An interval that just touches the benchmark is 有意差なし."""
    index = _series_index(lower, upper, benchmark)
    lo, up, b = _broadcast(lower, upper, benchmark)
    labels = np.full(lo.shape, NOT_SIGNIFICANT, dtype=object)
    labels[lo > b] = SIGNIFICANTLY_HIGHER
    labels[up < b] = SIGNIFICANTLY_LOWER
    labels[np.isnan(lo) | np.isnan(up) | np.isnan(b)] = np.nan
    return _wrap_labels(labels, index)


def change_judgement(lower, upper, higher_is_better=None):
    """Year-on-year judgement from the interval of the difference (later − earlier; e.g. from
    `proportion_difference_ci`), docs/design.md §5: an interval entirely above 0 is an increase, entirely
    below 0 a decrease, otherwise "変化なし". With a polarity (higher_is_better True/False) an
    increase/decrease is reported as "改善"/"悪化"; without one as "増加"/"減少". NaN when missing."""
    index = _series_index(lower, upper)
    lo, up = _broadcast(lower, upper)
    if higher_is_better is None:
        up_label, down_label = CHANGE_INCREASED, CHANGE_DECREASED
    elif higher_is_better:
        up_label, down_label = CHANGE_IMPROVED, CHANGE_WORSENED
    else:
        up_label, down_label = CHANGE_WORSENED, CHANGE_IMPROVED
    labels = np.full(lo.shape, CHANGE_NONE, dtype=object)
    labels[lo > 0] = up_label
    labels[up < 0] = down_label
    labels[np.isnan(lo) | np.isnan(up)] = np.nan
    return _wrap_labels(labels, index)


def change_judgement_by_polarity(lower, upper, polarity):
    """`change_judgement` with one polarity per row ("higher_better", "lower_better" or None/NaN
    for none): 改善 / 変化なし / 悪化 where a polarity exists, 増加 / 変化なし / 減少 otherwise.
    Returns an object array (NaN where a limit is missing)."""
    lo, up = (np.asarray(_as_float(v), dtype=float) for v in (lower, upper))
    pol = np.broadcast_to(np.asarray(polarity, dtype=object), lo.shape)
    out = np.full(lo.shape, np.nan, dtype=object)
    for value, higher_is_better in ((HIGHER_BETTER, True), (LOWER_BETTER, False)):  # two polarities
        sel = pol == value
        if sel.any():
            out[sel] = np.asarray(change_judgement(lo[sel], up[sel], higher_is_better), dtype=object)
    rest = ~((pol == HIGHER_BETTER) | (pol == LOWER_BETTER))
    if rest.any():
        out[rest] = np.asarray(change_judgement(lo[rest], up[rest]), dtype=object)
    return out


def judgement(comparison, polarity) -> np.ndarray:
    """What a comparison with the benchmark means for the reader (docs/design.md §10): with a polarity
    良い / 差なし / 悪い (有意に高い is 良い for "higher_better", 悪い for "lower_better"), without one
    高い / 差なし / 低い; None where there is no comparison (missing or unknown label)."""
    comp = np.asarray(comparison, dtype=object)
    pol = np.broadcast_to(np.asarray(polarity, dtype=object), comp.shape)
    out = np.full(comp.shape, None, dtype=object)
    hi, lo, ns = comp == SIGNIFICANTLY_HIGHER, comp == SIGNIFICANTLY_LOWER, comp == NOT_SIGNIFICANT
    hb, lb = pol == HIGHER_BETTER, pol == LOWER_BETTER
    out[ns] = JUDGEMENT_SAME
    out[hi & hb] = JUDGEMENT_BETTER
    out[lo & hb] = JUDGEMENT_WORSE
    out[hi & lb] = JUDGEMENT_WORSE
    out[lo & lb] = JUDGEMENT_BETTER
    nopol = ~(hb | lb)
    out[hi & nopol] = JUDGEMENT_HIGHER
    out[lo & nopol] = JUDGEMENT_LOWER
    return out


# ---------------------------------------------------------------------------------------------
# Standard populations


def _five_year_labels(last_open: int) -> list[str]:
    return [f"{a}-{a + 4}" for a in range(0, last_open, 5)] + [f"{last_open}+"]


#: 平成27年モデル人口 (docs/rules.md §8; confidence M: one source, confirm against e-Stat before release).
#: The one copy in the repository. Source: MHLW model population used for 年齢調整死亡率 since the
#: 令和2年 reports, transcribed in refdata `standard_population_H27_model_2015.csv` (PROVENANCE:
#: from hudikaha/mstats, citing e-Stat statInfId=000032172746); total 125,319,000. Checked by
#: tests/test_stats.py against docs/rules.md §8 and that file (no published H27 rate could be reproduced
#: from available inputs; the 288 published rates checked are S60-based, below).
H27_STANDARD_POPULATION = pd.Series(
    [5026000, 5369000, 5711000, 6053000, 6396000, 6738000, 7081000, 7423000, 7766000, 8108000,
     8451000, 8793000, 9135000, 9246000, 7892000, 6306000, 4720000, 3134000, 1548000, 423000],
    index=pd.Index(_five_year_labels(95), name="age_band"), name="平成27年モデル人口", dtype="int64",
)

#: 昭和60年モデル人口 (MHLW; used for 75歳未満年齢調整死亡率 of がん情報サービス, top band 85+).
#: The one copy in the repository (refdata `standard_population_S60_model_1985.csv`, total
#: 120,287,000); it reproduces all 288 published がん情報サービス ASR75 (tests/test_stats.py).
S60_STANDARD_POPULATION = pd.Series(
    [8180000, 8338000, 8497000, 8655000, 8814000, 8972000, 9130000, 9289000, 9400000, 8651000,
     7616000, 6581000, 5546000, 4511000, 3476000, 2441000, 1406000, 784000],
    index=pd.Index(_five_year_labels(85), name="age_band"), name="昭和60年モデル人口", dtype="int64",
)

_NAMED_STANDARDS = {
    "H27": H27_STANDARD_POPULATION, "平成27年": H27_STANDARD_POPULATION,
    "平成27年モデル人口": H27_STANDARD_POPULATION,
    "S60": S60_STANDARD_POPULATION, "昭和60年": S60_STANDARD_POPULATION,
    "昭和60年モデル人口": S60_STANDARD_POPULATION,
}

#: The data-derived standard "pref": the prefecture's 特定健診 対象者 (国保 40–74) and 後期高齢者
#: (75+), i.e. the denominators of these two registered indicators, by age band in one year.
PREF_STANDARD_INDICATORS = ("kenshin_rate", "kouki_kenshin_rate")
PREF_STANDARD = "pref"

#: Japanese name of each standard a user can choose (notes on charts and tables).
STANDARD_POPULATION_LABELS = {
    "H27": "平成27年モデル人口",
    "S60": "昭和60年モデル人口",
    PREF_STANDARD: "県の人口（特定健診対象者 40–74歳＋後期高齢者 75歳以上）",
}


def standard_population_label(name, fy=None) -> str:
    """Japanese name of a standard population for notes ("平成27年モデル人口", ...)."""
    if isinstance(name, (pd.Series, pd.DataFrame)):
        return "指定の人口"
    if isinstance(name, Path) or (isinstance(name, str) and name.lower().endswith(".csv")):
        return f"指定の人口（{Path(name).name}）"
    key = {"平成27年": "H27", "平成27年モデル人口": "H27", "昭和60年": "S60", "昭和60年モデル人口": "S60"}.get(name, name)
    label = STANDARD_POPULATION_LABELS.get(key or "H27")
    if label is None:
        return f"指定の人口（{name}）"
    if key == PREF_STANDARD and fy is not None:
        label = label.replace("）", f"、{fy}年度）")
    return label


def _standard_from_csv(path) -> pd.Series:
    """A user standard from a CSV file: first column the age band, one numeric population column."""
    path = Path(path)
    try:
        table = pd.read_csv(path, encoding="utf-8-sig", dtype={0: str})
    except FileNotFoundError:
        raise ParameterError(f"基準人口のファイル {path} が見つかりません。") from None
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ParameterError(f"基準人口のファイル {path} を読めません（UTF-8 の CSV で、年齢階級と人口の 2 列が必要です）: {e}") from None
    table = table.set_axis([str(c) for c in table.columns], axis=1)
    band_col = table.columns[0]
    table[band_col] = table[band_col].astype(str)
    numeric = [c for c in table.columns[1:] if pd.api.types.is_numeric_dtype(table[c])]
    if len(numeric) != 1:
        raise ParameterError(f"基準人口のファイル {path}: 1 列目に年齢階級、2 列目に人口（数値）を入れてください"
                             f"（列: {', '.join(table.columns)}）。")
    bad = table[numeric[0]].isna() | (table[numeric[0]] < 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # header = row 1
        raise ParameterError(f"基準人口のファイル {path} の {row} 行目、列「{numeric[0]}」: 値 "
                             f"{table[numeric[0]].iloc[row - 2]!r} は 0 以上の人数で指定してください。")
    return table.set_index(band_col)[numeric[0]].astype(float).rename(path.stem)


def _standard_from_data(data: pd.DataFrame, fy=None) -> pd.Series:
    """The "pref" standard from a strata table (fy, age_band, indicator_id, denominator)."""
    if data is None:
        raise ParameterError("基準人口 'pref'（県の人口）には、県全体の集計表（strata）を data に指定してください。")
    missing = {"fy", "age_band", "indicator_id", "denominator"} - set(data.columns)
    if missing:
        raise ParameterError(f"基準人口 'pref' の集計表に列 {', '.join(sorted(missing))} がありません。")
    rows = data[data["indicator_id"].isin(list(PREF_STANDARD_INDICATORS)).to_numpy()]
    years = sorted(pd.unique(rows["fy"]).tolist())
    if not years:
        raise ParameterError("基準人口 'pref' を作れません: 特定健診対象者・後期高齢者の人数が集計表にありません。")
    year = years[-1] if fy is None else int(fy)
    if year not in years:
        raise ParameterError(f"基準人口 'pref' の年度 {fy} のデータがありません（データにある年度: {years}）。")
    rows = rows[(rows["fy"] == year).to_numpy() & (rows["denominator"] > 0).to_numpy()]
    w = rows.groupby(rows["age_band"].astype(str), observed=True)["denominator"].sum().astype(float)
    # a band with nobody in it has weight 0 (so every band of AGE_BANDS can be formed)
    w = w.reindex(list(dict.fromkeys([*AGE_BANDS, *w.index])), fill_value=0.0)
    return w.rename(f"県の人口 {year}年度")


_OPEN_MARK = re.compile(r"(\+|plus|以上|[-－～~〜]\s*$)", re.IGNORECASE)


def _parse_band(label) -> tuple[float, float]:
    """Age band label -> [lo, hi) in years. Accepts "40-44", "40_44", "age_40_44", "40～44歳",
    "90+", "95plus", "age_100plus", "85歳以上", "80歳－"."""
    s = str(label).strip()
    nums = re.findall(r"\d+", s)
    if len(nums) == 2:
        lo, hi = int(nums[0]), int(nums[1]) + 1
        if hi > lo:
            return float(lo), float(hi)
    elif len(nums) == 1 and _OPEN_MARK.search(s):
        return float(nums[0]), np.inf
    raise ParameterError(f"年齢階級 {label!r} を解釈できません（例: '40-44', '90+'）。")


def _standard_series(standard) -> pd.Series:
    """A user standard (Series indexed by band, or DataFrame with a band and a population column)."""
    if isinstance(standard, pd.DataFrame):
        numeric = [c for c in standard.columns if pd.api.types.is_numeric_dtype(standard[c])]
        labels = [c for c in standard.columns if c not in numeric]
        if len(numeric) != 1 or len(labels) != 1:
            raise ParameterError("基準人口の表は「年齢階級」と「人口」の 2 列で指定してください。")
        standard = standard.set_index(labels[0])[numeric[0]]
    if not isinstance(standard, pd.Series):
        raise ParameterError("基準人口は 'H27'・'S60' のいずれか、または Series/DataFrame で指定してください。")
    return pd.to_numeric(standard).astype(float)


def standard_population(name="H27", bands=AGE_BANDS, *, data=None, fy=None) -> pd.Series:
    """Standard population weights for our age bands: the one registry (docs/design.md §5, docs/rules.md §8).

    name: "H27" (平成27年モデル人口, default; also "平成27年", "平成27年モデル人口"), "S60"
    (昭和60年モデル人口), "pref" (the prefecture's own population from `data`, see below), a
    user standard as a Series indexed by age band or a two-column DataFrame (band, population),
    or the path of such a CSV file (first column the band, one numeric column).

    "pref": `data` is the prefecture's strata table (columns fy, age_band, indicator_id,
    denominator); the weights are the 特定健診 対象者 (国保 40–74) plus 後期高齢者 (75+) by age band
    (denominators of `PREF_STANDARD_INDICATORS`, sexes combined) in fiscal year `fy` (default:
    the latest year in `data`).

    bands: the wanted bands, default `schema.AGE_BANDS` ("40-44" … "70-74", "75-79", "80-84",
    "85-89", "90+"); each wanted band is the sum of the standard's bands it covers exactly
    (H27: "90+" = "90-94" + "95+"). A wanted band that cuts a standard band (e.g. "85-89" from
    S60, whose top band is "85+") is an error. bands=None returns the whole standard.
    Returns a float Series indexed by band label.
    """
    if isinstance(name, str) and name in _NAMED_STANDARDS:
        std = _NAMED_STANDARDS[name].astype(float)
    elif isinstance(name, str) and name == PREF_STANDARD:
        std = _standard_from_data(data, fy)
    elif isinstance(name, Path) or (isinstance(name, str) and name.lower().endswith(".csv")):
        std = _standard_from_csv(name)
    elif isinstance(name, str) or name is None:
        raise ParameterError(f"基準人口 {name!r} は未対応です（'H27'・'S60'・'pref'、または年齢階級と人口の CSV）。")
    else:
        std = _standard_series(name)
    if bands is None:
        return std.rename_axis("age_band")
    intervals = np.array([_parse_band(b) for b in std.index])
    values = std.to_numpy(dtype=float)
    out = []
    for band in bands:  # a dozen bands at most
        lo, hi = _parse_band(band)
        inside = (intervals[:, 0] >= lo) & (intervals[:, 1] <= hi)
        overlapping = (intervals[:, 0] < hi) & (intervals[:, 1] > lo)
        covered = np.sort(intervals[inside], axis=0)
        contiguous = (
            inside.any()
            and not (overlapping & ~inside).any()
            and covered[0, 0] == lo
            and covered[-1, 1] == hi
            and np.all(covered[1:, 0] == covered[:-1, 1])
        )
        if not contiguous:
            raise ParameterError(f"基準人口の年齢階級から {band!r} を作れません（基準人口の階級: {', '.join(map(str, std.index))}）。")
        out.append(values[inside].sum())
    return pd.Series(out, index=pd.Index(list(bands), name="age_band"), name=std.name, dtype=float)


# ---------------------------------------------------------------------------------------------
# Empirical-Bayes smoothed ratio (EBSMR; docs/methods.md §14)


def eb_smoothed_ratio(observed, expected, conf=0.95):
    """Empirical-Bayes smoothed 標準化該当比 of many small areas (docs/methods.md §14).

    Poisson–gamma model of Clayton & Kaldor (1987): O_i ~ Poisson(θ_i E_i), θ_i ~ Gamma(α, β);
    α, β by the method of moments of Marshall (1991) over all areas given:
        m  = ΣO / ΣE,   s² = Σ E_i (O_i/E_i − m)² / ΣE − m / Ē   (s² < 0 → 0: no between-area variance)
        β  = m / s²,    α = m · β
    smoothed ratio (posterior mean) = (O_i + α) / (E_i + β); its interval is the `conf` equal-tailed
    interval of the posterior Gamma(O_i + α, E_i + β). With s² = 0 every area gets m (and a
    degenerate interval [m, m]). Areas with E = 0 or missing give NaN and are left out of m and s².

    Returns a DataFrame (index of the inputs when Series) with `value`, `lower`, `upper`, `weight`
    (the share of the area's own ratio: E_i / (E_i + β), 0 … 1), `prior_mean` (m) and `conf`.
    """
    index = _series_index(observed, expected)
    obs, e = _broadcast(observed, expected)
    obs, e = np.atleast_1d(obs).astype(float), np.atleast_1d(e).astype(float)
    _check_nonnegative("観察数", obs)
    _check_nonnegative("期待数", e)
    c = normalise_conf(conf)
    ok = np.isfinite(obs) & np.isfinite(e) & (e > 0)
    o_ok, e_ok = obs[ok], e[ok]
    value = np.full(obs.shape, np.nan)
    lower, upper, weight = value.copy(), value.copy(), value.copy()
    m = o_ok.sum() / e_ok.sum() if ok.any() and e_ok.sum() > 0 else np.nan
    if ok.any() and np.isfinite(m):
        s2 = float((e_ok * (o_ok / e_ok - m) ** 2).sum() / e_ok.sum() - m / e_ok.mean())
        if s2 > 0 and m > 0:
            beta = m / s2
            alpha = m * beta
            shape, rate = o_ok + alpha, e_ok + beta
            value[ok] = shape / rate
            tail = (1 - c) / 2
            lower[ok] = gamma_dist.ppf(tail, shape) / rate
            upper[ok] = gamma_dist.ppf(1 - tail, shape) / rate
            weight[ok] = e_ok / rate
        else:
            value[ok] = lower[ok] = upper[ok] = m
            weight[ok] = 0.0
    out = pd.DataFrame({"value": value, "lower": lower, "upper": upper, "weight": weight,
                        "prior_mean": m, "conf": c})
    if index is not None:
        out.index = index
    return out

"""Identity of the indicator engine with its reference implementations (issue 18 item 3).

The engine was rewritten for speed (hsutils.analysis.aggregate.strata_counts: one count per distinct
flag, keys decoded per stratum; hsutils.analysis.hotei_items.previous_year_status: integer keys instead
of a join of string columns; hsutils.analysis.indicators.indicator_table: groups coded in the published
row order instead of a sort, text columns gathered from their few labels). Published figures must not change, so each is compared here, frame for
frame (values, dtypes, categories, row order, index), with the previous implementation kept below as
the reference, on random tables that include missing keys, movers, duplicates and empty flags.
"""
from typing import Iterable

import numpy as np
import pandas as pd
from hypothesis import given, settings, strategies as st

from hsutils import stats
from hsutils.analysis import aggregate, hotei_items, indicators
from hsutils.core import parallel
from hsutils.analysis import indicators as _ind  # the reference's own parameter is called `indicators`
from hsutils.analysis.hotei_items import GUIDANCE_LEVELS, _bool, evaluable


# --- reference: the previous strata_counts (one bincount per indicator) -------------------------

def _ref_factorize(col: pd.Series):
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes = col.cat.codes.to_numpy()
        return codes.astype(np.int64), np.asarray(col.cat.categories, dtype=object)
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def reference_strata_counts(frame: pd.DataFrame, flags, keys=aggregate.STRATA_KEYS):
    """The previous implementation, verbatim (one bincount per indicator); contract as aggregate.strata_counts."""
    keys = list(keys)
    n = len(frame)
    code = np.zeros(n, dtype=np.int64)
    valid = np.ones(n, dtype=bool)
    levels = []
    radix = 1
    for k in keys:
        c, u = _ref_factorize(frame[k])
        valid &= c >= 0
        code += np.where(c >= 0, c, 0) * radix
        radix *= max(len(u), 1)
        levels.append(u)
    all_valid = bool(valid.all())
    if not all_valid:
        code = code[valid]
    size = radix
    # code2 = 2 × stratum + numerator flag: one bincount over the denominator rows gives both counts
    code2 = code.astype(np.int32 if 2 * size < 2 ** 31 else np.int64) * 2

    parts = []
    for ind_id, (num, den) in flags.items():
        den_v = np.asarray(den, dtype=bool)
        if not den_v.any():
            continue
        num_v = np.asarray(num, dtype=bool)
        if not all_valid:
            den_v, num_v = den_v[valid], num_v[valid]
        c = np.bincount((code2 + num_v)[den_v], minlength=2 * size).reshape(size, 2)
        d = c[:, 0] + c[:, 1]
        nz = np.flatnonzero(d)
        parts.append((ind_id, nz, c[nz, 1], d[nz]))

    if not parts:
        empty = pd.DataFrame({k: pd.Series(dtype=np.int64 if k in ("fy", "sex") else object) for k in keys})
        return empty.assign(indicator_id=pd.Series(dtype=object), numerator=pd.Series(dtype=np.int64),
                            denominator=pd.Series(dtype=np.int64))
    all_idx = np.concatenate([p[1] for p in parts])
    out = {}
    rem = all_idx.copy()
    for k, u in zip(keys, levels):
        m = max(len(u), 1)
        codes = rem % m
        rem //= m
        if k in ("fy", "sex"):
            out[k] = np.asarray(u, dtype=np.int64)[codes] if len(u) else np.array([], dtype=np.int64)
        else:
            # categorical keys: compact, and group-bys downstream work on the integer codes
            out[k] = pd.Categorical.from_codes(codes, categories=pd.Index(np.asarray(u, dtype=str)))
    df = pd.DataFrame(out)
    ids = [p[0] for p in parts]
    df["indicator_id"] = pd.Categorical.from_codes(
        np.repeat(np.arange(len(parts)), [len(p[1]) for p in parts]), categories=pd.Index(ids))
    df["numerator"] = np.concatenate([p[2] for p in parts]).astype(np.int64)
    df["denominator"] = np.concatenate([p[3] for p in parts]).astype(np.int64)
    return df


# --- reference: the previous previous_year_status (a merge on person_id, muni_code as text, fy) --

def reference_previous_year_status(py: pd.DataFrame) -> pd.DataFrame:
    """Last year's status of the same person at the same 保険者 (municipality), aligned with py
    (docs/hotei.md §4): `prev_evaluable` (評価対象者 last year), `prev_metabo` (last year's メタボ判定,
    NaN when not 評価対象), `prev_guidance_completer` (last year a 特定保健指導 対象者 by 階層化 who
    completed it). A person who moved municipality starts a new history (another 保険者)."""
    ev = evaluable(py)
    completer = ev & py["hokenshido"].isin(GUIDANCE_LEVELS).to_numpy() & _bool(py, "guidance_completed")
    last = pd.DataFrame({"person_id": py["person_id"].to_numpy(), "muni_code": py["muni_code"].astype(str).to_numpy(),
                         "fy": py["fy"].to_numpy() + 1, "prev_evaluable": ev,
                         "prev_metabo": py["metabo"].where(ev).to_numpy(dtype=object),
                         "prev_guidance_completer": completer})
    last = last[ev].drop_duplicates(["person_id", "muni_code", "fy"])
    keys = pd.DataFrame({"person_id": py["person_id"].to_numpy(), "muni_code": py["muni_code"].astype(str).to_numpy(),
                         "fy": py["fy"].to_numpy()})
    out = keys.merge(last, on=["person_id", "muni_code", "fy"], how="left")
    out.index = py.index
    out["prev_evaluable"] = out["prev_evaluable"].fillna(False).astype(bool)
    out["prev_guidance_completer"] = out["prev_guidance_completer"].fillna(False).astype(bool)
    return out[["prev_evaluable", "prev_metabo", "prev_guidance_completer"]]


# --- reference: the previous indicator_table (groups by area first, output sorted) ---------------

def reference_indicator_table(strata: pd.DataFrame, level: str = "muni", *, area_map: pd.DataFrame | None = None,
                    fy: int | Iterable[int] | None = None, indicators: Iterable[str] | None = None,
                    reference: pd.DataFrame | None = None, std_pop="H27", conf: float = 0.95,
                    suppress_threshold: int = 10, by_sex: bool = False) -> pd.DataFrame:
    """The previous implementation, verbatim (output sorted at the end); contract as indicators.indicator_table."""
    s = strata
    fys = None
    if fy is not None:
        fys = [fy] if np.ndim(fy) == 0 else list(fy)
        s = s[s["fy"].isin(fys).to_numpy()]
    if indicators is not None:
        s = s[s["indicator_id"].isin(list(indicators)).to_numpy()]
    ref = s if reference is None else reference
    if fys is not None:
        ref = ref[ref["fy"].isin(fys).to_numpy()]
    if level == "muni" and not (s["district_code"] != "").any():
        rolled = s.assign(area_code=s["muni_code"])  # already one row per muni stratum
        same_rows = reference is None  # rolled rows are the reference rows, in the same order
    else:
        rolled = aggregate.rollup(s, area_map, level)
        same_rows = False
    if rolled.empty:
        return pd.DataFrame(columns=["area_code", "area_name", "fy", "indicator_id", "numerator", "denominator"])

    # integer codes of the keys
    ind_cats = _ind._categories(rolled["indicator_id"], ref["indicator_id"])
    band_cats = _ind._categories(rolled["age_band"], ref["age_band"])
    fy_cats = pd.Index(sorted(set(rolled["fy"].unique()) | set(ref["fy"].unique())))
    area_cats = _ind._categories(rolled["area_code"])
    n_ind, n_band, n_fy, n_area = len(ind_cats), len(band_cats), len(fy_cats), len(area_cats)

    def keys(df):
        fy_vals = df["fy"].to_numpy()
        fy_idx = np.searchsorted(fy_cats.to_numpy(), fy_vals)  # fy_cats is sorted and holds every fy
        return (_ind._codes(df["indicator_id"], ind_cats), _ind._codes(df["age_band"], band_cats),
                fy_idx, df["sex"].to_numpy().astype(np.int64) - 1)

    ind, band, fyc, sex = keys(rolled)
    area = _ind._codes(rolled["area_code"], area_cats)
    x = rolled["numerator"].to_numpy(dtype=float)
    n = rolled["denominator"].to_numpy(dtype=float)
    n_sex = 2 if by_sex else 1
    sexg = sex if by_sex else np.zeros_like(sex)
    g = ((area * n_fy + fyc) * n_ind + ind) * n_sex + sexg  # output group
    n_g = n_area * n_fy * n_ind * n_sex

    # crude (Wilson, docs/design.md §4)
    X = np.bincount(g, weights=x, minlength=n_g)
    N = np.bincount(g, weights=n, minlength=n_g)
    present = np.flatnonzero(N > 0)

    # direct standardisation over age bands: dense (group × band) matrices for stats.dsr
    ga = g * n_band + band
    xa = np.bincount(ga, weights=x, minlength=n_g * n_band).reshape(n_g, n_band)
    na = np.bincount(ga, weights=n, minlength=n_g * n_band).reshape(n_g, n_band)
    w_band = _ind._lookup_band_weights(std_pop, band_cats)

    # indirect standardisation: reference rates by fy × indicator × sex × age band (docs/methods.md §6)
    rind, rband, rfy, rsex = (ind, band, fyc, sex) if same_rows else keys(ref)
    rk_size = n_fy * n_ind * 2 * n_band
    rk = ((rfy * n_ind + rind) * 2 + rsex) * n_band + rband
    valid = (rind >= 0) & (rband >= 0) & (rfy >= 0)
    RX = np.bincount(rk[valid], weights=ref["numerator"].to_numpy(float)[valid], minlength=rk_size)
    RN = np.bincount(rk[valid], weights=ref["denominator"].to_numpy(float)[valid], minlength=rk_size)
    with np.errstate(divide="ignore", invalid="ignore"):
        rrate = np.where(RN > 0, RX / RN, 0.0)
    k_row = ((fyc * n_ind + ind) * 2 + sex) * n_band + band
    E = np.bincount(g, weights=n * rrate[k_row], minlength=n_g)
    # reference crude rate per fy × indicator (× sex)
    rtk = (rfy * n_ind + rind) * (2 if by_sex else 1) + (rsex if by_sex else 0)
    rt_size = n_fy * n_ind * (2 if by_sex else 1)
    RTX = np.bincount(rtk[valid], weights=ref["numerator"].to_numpy(float)[valid], minlength=rt_size)
    RTN = np.bincount(rtk[valid], weights=ref["denominator"].to_numpy(float)[valid], minlength=rt_size)

    # assemble the present groups
    gp = present
    sex_p = gp % n_sex
    rest = gp // n_sex
    ind_p = rest % n_ind
    rest //= n_ind
    fy_p = rest % n_fy
    area_p = rest // n_fy
    Xp, Np, Ep = X[gp], N[gp], E[gp]
    p, lo, hi = stats.proportion_ci(Xp, Np, conf)
    # DSR (Dobson; NaN below 10 events; empty bands left out with their weight: stats, docs/methods.md §5).
    # A group with persons in a band the standard does not cover (S60 has no 85-89) is not
    # standardised (NaN), rather than standardised over the bands that happen to be covered.
    xs, ns = xa[gp], na[gp]
    uncovered = ((ns > 0) & np.isnan(w_band)[None, :]).any(axis=1)
    xs[uncovered], ns[uncovered] = 0.0, 0.0
    adj, adj_lo, adj_hi = stats.dsr(xs, ns, w_band, conf, multiplier=100)
    # 標準化該当比 from the observed count and the expected count summed above (docs/methods.md §6)
    sr, srl, sru = stats.isr_from_expected(Xp, Ep, conf)
    rt_idx = (fy_p * n_ind + ind_p) * (2 if by_sex else 1) + (sex_p if by_sex else 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ref_rate = np.where(RTN[rt_idx] > 0, RTX[rt_idx] / RTN[rt_idx] * 100, np.nan)
    out = pd.DataFrame({
        "area_code": area_cats.to_numpy()[area_p], "fy": fy_cats.to_numpy()[fy_p],
        "indicator_id": ind_cats.to_numpy()[ind_p],
        "numerator": Xp.astype(np.int64), "denominator": Np.astype(np.int64),
        "crude_rate": p * 100, "crude_lower": lo * 100, "crude_upper": hi * 100,
        "adj_rate": adj, "adj_lower": adj_lo, "adj_upper": adj_hi,
        "expected": Ep, "sr": sr, "sr_lower": srl, "sr_upper": sru, "ref_rate": ref_rate,
    })
    if by_sex:
        out.insert(3, "sex", sex_p + 1)
    out["comparison"] = _ind._comparison(out["sr_lower"].to_numpy(), out["sr_upper"].to_numpy(), 1.0)
    reg = _ind.registry_frame().set_index("indicator_id").reindex(ind_cats)
    for col in ("indicator_name", "polarity", "category", "unit"):
        out[col] = reg[col].to_numpy()[ind_p]  # looked up per indicator, not per row
    out["judgement"] = _ind.judgement(out["comparison"].to_numpy(), out["polarity"].to_numpy())
    num, den = out["numerator"].to_numpy(), out["denominator"].to_numpy()
    out["suppressed"] = ((num > 0) & (num < suppress_threshold)) | ((den > 0) & (den < suppress_threshold))
    # the indirect ratio's observed count is the area's numerator: exact limits below 10 (docs/methods.md §1c)
    out["method"] = np.array([f"{stats.METHOD_WILSON}; {stats.METHOD_DOBSON}; 間接法 {m}"
                              for m in (stats.METHOD_EXACT, stats.METHOD_BYAR)],
                             dtype=object)[(num >= stats.SMALL_COUNT_LIMIT).astype(np.int8)]
    out["conf"] = conf
    out = _ref_attach_area_names(out, level, area_map)
    return out.sort_values(["indicator_id", "fy", "area_code"] + (["sex"] if by_sex else []),
                           kind="stable").reset_index(drop=True)


def _ref_attach_area_names(out: pd.DataFrame, level: str, area_map: pd.DataFrame | None) -> pd.DataFrame:
    out = out.copy()
    if area_map is None or level == "national":
        out["area_name"] = np.where(level == "national", "全国", out["area_code"])
        return out
    m = area_map.drop_duplicates("muni_code")
    if level == "muni":
        names = m.set_index("muni_code")["name"]
        out["area_name"] = out["area_code"].map(names)
        if "medical_area" in m:
            out["medical_area"] = out["area_code"].map(m.set_index("muni_code")["medical_area"])
    elif level == "medical_area":
        names = m.drop_duplicates("medical_area_code").set_index("medical_area_code")["medical_area"]
        out["area_name"] = out["area_code"].map(names.rename(index=str))
    elif level == "pref":
        pn = m.drop_duplicates("pref_code")
        col = "pref_name" if "pref_name" in pn else "pref_code"
        out["area_name"] = out["area_code"].map(pn.set_index(pn["pref_code"].astype(str))[col])
    else:
        out["area_name"] = out["area_code"]
    return out


# --- random person tables -------------------------------------------------------------------------

def _person_table(seed: int, n: int, categorical: bool, missing_keys: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    munis = np.array(["17201", "17202", "17203", "17361"])
    bands = np.array(["40-44", "45-49", "65-69", "70-74", "75-79"])
    df = pd.DataFrame({
        "person_id": rng.integers(0, max(n // 3, 1), n),
        "fy": rng.integers(2021, 2025, n),
        "muni_code": rng.choice(munis, n),
        "district_code": rng.choice(["", "01", "02"], n),
        "sex": rng.integers(1, 3, n),
        "age_band": rng.choice(bands, n),
        "insurance": "国保", "age": rng.integers(38, 77, n), "full_year": rng.random(n) < .9,
        "excluded_statutory": rng.random(n) < .05, "has_kenshin": rng.random(n) < .6,
        "metabo": pd.Categorical(rng.choice(np.array(["該当", "予備群", "非該当", None], dtype=object), n),
                                 categories=["該当", "予備群", "非該当", "判定不能"]),
        "hokenshido": pd.Categorical(rng.choice(np.array(["積極的支援", "動機付け支援", "情報提供", "服薬中", None],
                                                         dtype=object), n)),
        "guidance_completed": rng.random(n) < .5,
    }, index=rng.permutation(n) + 7)
    if categorical:
        for k in ("muni_code", "district_code", "age_band"):
            df[k] = df[k].astype("category")
    if not categorical:
        df["metabo"] = df["metabo"].astype(object)  # text labels, not categorical: the other path
    if missing_keys and n:
        rows = df.index[rng.random(n) < .1]
        df.loc[rows, "age_band"] = None
        df.loc[df.index[:2], "muni_code"] = None
    return df


def _flags(seed: int, n: int, k: int) -> dict:
    rng = np.random.default_rng(seed + 1)
    den_shared = rng.random(n) < .5
    out = {}
    for i in range(k):
        den = den_shared if i % 2 else rng.random(n) < rng.random()
        if i == 3:
            den = np.zeros(n, dtype=bool)  # an indicator without population: no rows
        out[f"ind{i}"] = (rng.random(n) < .3, den)  # numerators outside the denominator too
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 300), st.booleans(), st.booleans(), st.integers(0, 7))
def test_strata_counts_equal_reference(seed, n, categorical, missing_keys, k):
    frame = _person_table(seed, n, categorical, missing_keys)
    flags = _flags(seed, n, k)
    for keys in (aggregate.STRATA_KEYS, ("fy", "muni_code", "sex")):
        pd.testing.assert_frame_equal(aggregate.strata_counts(frame, flags, keys),
                                      reference_strata_counts(frame, flags, keys), check_categorical=True)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 300), st.booleans(), st.booleans())
def test_previous_year_status_equals_reference(seed, n, categorical, missing_keys):
    frame = _person_table(seed, n, categorical, missing_keys)
    if seed % 2:
        frame["person_id"] = frame["person_id"].astype(str)
    elif seed % 4 == 2:  # integer ids too far apart to be their own key: factorised
        frame["person_id"] = frame["person_id"] * 10 ** 15 - 5
    elif seed % 8 == 4:  # small unsigned ids: their own key, offset to 0
        frame["person_id"] = frame["person_id"].astype(np.uint16) + 3
    elif seed % 16 == 8:  # ids their own key but too sparse to count per person: every row looked up
        frame["person_id"] = frame["person_id"] * 100_000
    new, ref = hotei_items.previous_year_status(frame), reference_previous_year_status(frame)
    pd.testing.assert_frame_equal(new, ref)
    assert [type(v) for v in new["prev_metabo"]] == [type(v) for v in ref["prev_metabo"]]


def test_previous_year_status_links_the_same_person_and_municipality_only():
    """Hand case: A is 評価対象 in 2023 and 2024 at 17201 (linked); B moves 17201 → 17202 (new history);
    C was not 評価対象 in 2023 (not linked)."""
    frame = pd.DataFrame({
        "person_id": ["A", "A", "B", "B", "C", "C"], "fy": [2023, 2024, 2023, 2024, 2023, 2024],
        "muni_code": ["17201", "17201", "17201", "17202", "17201", "17201"],
        "insurance": "国保", "age": 60, "full_year": True, "excluded_statutory": False,
        "has_kenshin": [True, True, True, True, False, True],
        "metabo": pd.Categorical(["該当", "非該当", "予備群", "該当", None, "該当"]),
        "hokenshido": pd.Categorical(["積極的支援", None, "動機付け支援", None, None, None]),
        "guidance_completed": [True, False, False, False, False, False]})
    out = hotei_items.previous_year_status(frame)
    assert out["prev_evaluable"].tolist() == [False, True, False, False, False, False]
    assert out["prev_metabo"].iloc[1] == "該当" and out["prev_metabo"].drop(index=1).isna().all()
    assert out["prev_guidance_completer"].tolist() == [False, True, False, False, False, False]


# --- indicator_table ------------------------------------------------------------------------------

_AREA_MAP = pd.DataFrame({
    "muni_code": ["17201", "17202", "17203", "17361"], "name": ["金沢市", "七尾市", "小松市", "川北町"],
    "medical_area_code": ["1701", "1702", "1701", "1701"], "medical_area": ["石川中央", "能登中部", "石川中央", "石川中央"],
    "pref_code": ["17", "17", "17", "17"], "pref_name": ["石川県"] * 4})

# registered ids (names, polarity from the registry; med_bp has no polarity) and one that is not registered
_IDS = ["kenshin_rate", "metabo", "med_bp", "hba1c8", "not_registered", "ik_oral", "egfr45"]


def _strata(seed: int, n: int, categorical: bool) -> pd.DataFrame:
    frame = _person_table(seed, n, categorical, missing_keys=False)
    rng = np.random.default_rng(seed + 2)
    flags = {}
    for i, ind in enumerate(_IDS):
        den = rng.random(n) < (0.9 if i % 2 else 0.4)
        flags[ind] = (rng.random(n) < rng.random() * (0.02 if i == 2 else 1), den)  # med_bp: small counts
    return aggregate.strata_counts(frame, flags)


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 400), st.booleans(),
       st.sampled_from(["muni", "district", "medical_area", "pref", "national"]), st.booleans(),
       st.sampled_from(["H27", "S60"]), st.sampled_from([0.95, 0.998]), st.booleans())
def test_indicator_table_equals_reference(seed, n, categorical, level, by_sex, std_pop, conf, subset):
    strata = _strata(seed, n, categorical)
    kwargs = dict(area_map=None if (level == "muni" and seed % 3 == 0) else _AREA_MAP, std_pop=std_pop,
                  conf=conf, by_sex=by_sex)
    if subset:  # a year and indicators chosen, the reference area a part of the data
        kwargs.update(fy=[2022, 2023], indicators=_IDS[1:5], reference=strata[(strata["sex"] == 1).to_numpy()])
    new = indicators.indicator_table(strata, level, **kwargs)
    ref = reference_indicator_table(strata, level, **kwargs)
    pd.testing.assert_frame_equal(new, ref, check_exact=True)
    assert list(new.dtypes) == list(ref.dtypes)


def test_indicator_table_all_missing_labels_keep_their_dtype():
    """Labels that are all missing (no polarity for med_bp; no comparison without an expected count)
    stay an object column of None, as pandas makes of such an object array; a zero-denominator row is left out."""
    strata = pd.DataFrame({
        "fy": [2024, 2024, 2024], "muni_code": pd.Categorical(["17201", "17202", "17202"]),
        "district_code": pd.Categorical(["", "", ""]), "sex": [1, 2, 2],
        "age_band": pd.Categorical(["40-44", "45-49", "50-54"]), "indicator_id": pd.Categorical(["med_bp"] * 3),
        "numerator": [0, 12, 0], "denominator": [30, 40, 0]})
    new = indicators.indicator_table(strata, "muni", area_map=_AREA_MAP)
    pd.testing.assert_frame_equal(new, reference_indicator_table(strata, "muni", area_map=_AREA_MAP), check_exact=True)
    assert new["polarity"].dtype == object and new["polarity"].isna().all()
    assert new["area_name"].tolist() == ["金沢市", "七尾市"] and new["denominator"].tolist() == [30, 40]


def test_count_limits_per_distinct_count_equal_elementwise():
    """stats.count_limits computes the exact limits once per distinct count below 10: the same values
    as computing them element by element (Byar's from 10; NaN stays NaN)."""
    x = np.array([0, 3, 9, 10, 3, 0, np.nan, 250, 9, 1.5])
    lower, upper = stats.count_limits(x, 0.95)
    for i, v in enumerate(x):
        if np.isnan(v):
            assert np.isnan(lower[i]) and np.isnan(upper[i])
            continue
        el, eu = stats.exact_poisson_limits(v, 0.95) if v < 10 else stats.byar_limits(v, 0.95)
        assert (lower[i], upper[i]) == (el, eu)


def test_small_integer_keys_and_all_true_flags_at_the_boundaries():
    """fy/sex factorised without hashing (`aggregate._small_int_levels`): first-seen order like
    `pd.factorize` (hand-worked), at 16 and 17 possible values (16 is the limit: beyond it `pd.factorize`), with
    values absent inside the range, several integer types; and a flag true on every row counted in full."""
    codes, levels = aggregate._factorize(pd.Series(np.array([2024, 2022, 2024, 2023, 2022], dtype=np.int16)))
    assert codes.tolist() == [0, 1, 0, 2, 1] and levels.tolist() == [2024, 2022, 2023]
    assert aggregate._small_int_levels(np.arange(2009, 2025)) is not None  # 16 possible values
    assert aggregate._small_int_levels(np.arange(2008, 2025)) is None  # 17: hashed by pd.factorize
    rng = np.random.default_rng(5)
    n = 400
    for values, dtype in ((np.arange(2009, 2025), np.int16), (np.arange(2008, 2025), np.int16),
                          (np.array([2024, 2020, 2022]), np.int64), (np.array([0, 3]), np.uint8),
                          (np.array([-3, 7]), np.int8)):
        col = rng.choice(values, n).astype(dtype)
        got = aggregate._factorize(pd.Series(col))
        want = pd.factorize(col)
        assert np.array_equal(got[0], want[0]) and got[1].tolist() == want[1].tolist()
        frame = pd.DataFrame({"fy": col, "muni_code": rng.choice(["17201", "17202"], n), "district_code": "",
                              "sex": rng.integers(1, 3, n).astype(np.int8), "age_band": rng.choice(["40-44", "70-74"], n)})
        flags = {"everyone": (rng.random(n) < .3, np.ones(n, dtype=bool)), "some": (np.ones(n, bool), rng.random(n) < .5)}
        got = aggregate.strata_counts(frame, flags)
        pd.testing.assert_frame_equal(got, reference_strata_counts(frame, flags), check_categorical=True)
        assert got.loc[got["indicator_id"] == "everyone", "denominator"].sum() == n


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 300), st.booleans(), st.booleans(), st.integers(0, 7),
       st.integers(1, 40), st.integers(1, 4))
def test_strata_counts_in_blocks_on_threads_equal_reference(seed, n, categorical, missing_keys, k, block, cores):
    """The codes and counts made block by block (`parallel.BLOCK_ROWS`) and shared among threads
    (`parallel.PARALLEL_MIN_ROWS`, one run of blocks per core) give the one-pass table, at any block size
    (a block of one row, blocks that do not divide the rows, more cores than blocks), with the flags
    counted on up to four threads."""
    frame = _person_table(seed, n, categorical, missing_keys)
    flags = _flags(seed, n, k)
    want = reference_strata_counts(frame, flags)
    saved = parallel.BLOCK_ROWS, parallel.PARALLEL_MIN_ROWS, parallel.cores, aggregate.PARALLEL_MIN_COUNT_ROWS
    try:
        parallel.BLOCK_ROWS, parallel.PARALLEL_MIN_ROWS, parallel.cores = block, 0, (lambda: cores)
        aggregate.PARALLEL_MIN_COUNT_ROWS = 0
        assert len(parallel.row_runs(n)) == min(cores, max(1, -(-n // block)))
        got = aggregate.strata_counts(frame, flags)
    finally:
        (parallel.BLOCK_ROWS, parallel.PARALLEL_MIN_ROWS, parallel.cores,
         aggregate.PARALLEL_MIN_COUNT_ROWS) = saved
    pd.testing.assert_frame_equal(got, want, check_categorical=True)
    # the row codes of `stratum_codes` (counted on raw codes, fy/sex as offsets): the reference's mixed radix
    code, levels, size = aggregate.stratum_codes(frame)
    want_code, valid, radix = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool), 1
    for k, u in zip(aggregate.STRATA_KEYS, levels):
        c, ref_levels = _ref_factorize(frame[k])
        assert list(u) == list(ref_levels)
        valid &= c >= 0
        want_code += np.where(c >= 0, c, 0) * radix
        radix *= max(len(u), 1)
    assert size == radix and np.array_equal(code, np.where(valid, want_code, size))


def test_small_integer_levels_found_beyond_the_first_window():
    """First-seen order when a value first appears after the first search window (4,096 rows) and
    after the second (4,096 + 32,768), and with a value of the range absent from the column."""
    col = np.full(50_000, 2024, dtype=np.int16)
    col[5_000] = 2021
    col[40_000:] = 2022  # 2023 is inside the range 2021–2024 but absent
    assert aggregate._small_int_levels(col) is not None  # the search of the small-integer path
    codes, levels = aggregate._factorize(pd.Series(col))
    want_codes, want_levels = pd.factorize(col)
    assert levels.tolist() == [2024, 2021, 2022] == want_levels.tolist()
    assert np.array_equal(codes, want_codes)
    assert codes[[0, 5_000, 40_000, 49_999]].tolist() == [0, 1, 2, 2]

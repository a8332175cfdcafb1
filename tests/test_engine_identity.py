"""Identity of the indicator engine with its reference implementations (issue 18 item 3).

The engine was rewritten for speed (hsutils.analysis.aggregate.strata_counts: one count per distinct
flag, keys decoded per stratum; hsutils.analysis.hotei_items.previous_year_status: integer keys instead
of a join of string columns). Published figures must not change, so each is compared here, frame for
frame (values, dtypes, categories, row order, index), with the previous implementation kept below as
the reference, on random tables that include missing keys, movers, duplicates and empty flags.
"""
import numpy as np
import pandas as pd
from hypothesis import given, settings, strategies as st

from hsutils.analysis import aggregate, hotei_items
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

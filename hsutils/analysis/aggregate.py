"""One-pass strata counts: fiscal year × area × sex × age band → numerator and denominator.

The strata table is the only thing the indicator tables need, and every area level is a
group-by sum of it, so municipal, 二次医療圏, prefectural and national figures always add up
(docs/design.md §2, §8).

Speed: the group keys are turned into one integer code (mixed radix over the factorised key
columns) and every indicator is counted with `numpy.bincount`, which is one C loop per
indicator over the rows. The same function applied to partitions of the person table gives
partial strata tables whose `combine_strata` sum is the full table (backend-neutral shape).
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd

STRATA_KEYS = ("fy", "muni_code", "district_code", "sex", "age_band")


def _factorize(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes = col.cat.codes.to_numpy()
        return codes.astype(np.int64), np.asarray(col.cat.categories, dtype=object)
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def strata_counts(frame: pd.DataFrame, flags: Mapping[str, tuple[np.ndarray, np.ndarray]],
                  keys: Iterable[str] = STRATA_KEYS) -> pd.DataFrame:
    """Count numerators and denominators per stratum for every indicator in one pass.

    Parameters
    ----------
    frame : person-level frame holding the key columns (one row per person × fy).
    flags : indicator_id -> (numerator bool array, denominator bool array), aligned with frame.
            The numerator is counted only where the denominator holds.
    keys  : stratum columns; rows with a missing key are not counted (the pipeline reports them).

    Returns a long DataFrame: keys..., indicator_id, numerator, denominator (int64), one row per
    stratum × indicator with denominator > 0.
    """
    keys = list(keys)
    n = len(frame)
    code = np.zeros(n, dtype=np.int64)
    valid = np.ones(n, dtype=bool)
    levels = []
    radix = 1
    for k in keys:
        c, u = _factorize(frame[k])
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


def _recode(col: pd.Series, mapping: pd.Series) -> pd.Categorical:
    """Map a (categorical) key through `mapping` by its categories, not row by row."""
    cat = col.astype("category")
    mapped = pd.Series(cat.cat.categories.astype(str)).map(mapping)
    new_cats = pd.Index(pd.unique(mapped.dropna()))
    lookup = np.append(new_cats.get_indexer(mapped.fillna("\0")), -1)
    codes = cat.cat.codes.to_numpy()
    return pd.Categorical.from_codes(lookup[np.where(codes >= 0, codes, len(lookup) - 1)], categories=new_cats)


def combine_strata(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Sum partial strata tables (e.g. computed per partition of the person table)."""
    df = pd.concat(list(parts), ignore_index=True)
    keys = [c for c in df.columns if c not in ("numerator", "denominator")]
    return df.groupby(keys, as_index=False, sort=True, observed=True)[["numerator", "denominator"]].sum()


def rollup(strata: pd.DataFrame, area_map: pd.DataFrame | None, level: str,
           keep: Iterable[str] = ("fy", "sex", "age_band", "indicator_id")) -> pd.DataFrame:
    """Sum strata to an area level: 'district', 'muni', 'medical_area', 'pref' or 'national'.

    `area_map` maps muni_code to medical_area_code/medical_area and pref_code (the municipality
    master). The output has columns area_code, area_name, keep..., numerator, denominator.
    """
    keep = list(keep)
    s = strata
    if level == "district":
        s = s[(s["district_code"] != "").to_numpy()]
        s = s.assign(area_code=(s["muni_code"].astype(str) + ":" + s["district_code"].astype(str)).astype("category"))
    elif level == "muni":
        s = s.assign(area_code=s["muni_code"])
    elif level in ("medical_area", "pref"):
        col = "medical_area_code" if level == "medical_area" else "pref_code"
        m = area_map.drop_duplicates("muni_code").set_index("muni_code")[col].astype(str)
        s = s.assign(area_code=_recode(s["muni_code"], m))
        s = s[s["area_code"].notna().to_numpy()]
    elif level == "national":
        s = s.assign(area_code=pd.Categorical(np.full(len(s), "00000")))
    else:
        raise ValueError(f"unknown level {level!r}")
    return (s.groupby(["area_code"] + keep, as_index=False, sort=False, observed=True)
             [["numerator", "denominator"]].sum())

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
    """Integer codes (−1 = missing) and the levels they index: a categorical's own codes, else first-seen order."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.codes.to_numpy(), np.asarray(col.cat.categories, dtype=object)
    values = col.to_numpy() if isinstance(col.dtype, np.dtype) and col.dtype.kind in "iu" else None
    if values is not None and len(values):
        small = _factorize_small_ints(values)
        if small is not None:
            return small
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    return codes, np.asarray(uniques, dtype=object)


def _factorize_small_ints(values: np.ndarray, most: int = 16) -> tuple[np.ndarray, np.ndarray] | None:
    """`pd.factorize` of an integer column with at most `most` distinct values in a narrow range
    (fy, sex), without hashing: the same codes and levels (first-seen order), one byte-wide pass per
    possible value. None when the column does not qualify."""
    lo, hi = int(values.min()), int(values.max())
    if hi - lo >= most:  # more possible values than `most`: not worth a pass each
        return None
    # offsets 0…hi−lo in one byte, subtracted in the column's own type (no int64 copy of the rows)
    offset = values if values.dtype == np.uint8 and lo == 0 else (values - values.dtype.type(lo)).astype(np.uint8)
    present, first = [], []
    for v in range(hi - lo + 1):  # at most `most` values; argmax stops at the first hit
        at = int(np.argmax(offset == v))
        if offset[at] == v:
            present.append(v)
            first.append(at)
    order = np.asarray(present)[np.argsort(first, kind="stable")]
    lookup = np.full(hi - lo + 1, -1, dtype=np.int8)
    lookup[order] = np.arange(len(order), dtype=np.int8)
    return lookup[offset], np.asarray(values[np.sort(first)], dtype=object)


def stratum_codes(frame: pd.DataFrame, keys: Iterable[str] = STRATA_KEYS) -> tuple[np.ndarray, list, int]:
    """One integer per row: the mixed-radix code of its key values (first key least significant).

    Returns (codes, levels per key, number of strata). A row with a missing key gets the code
    `size` (one past the last stratum), so that it falls into a spare bin that is never reported.
    The codes are int32 when every stratum fits (half the bytes of each `take` per count), else int64.
    """
    factorized = [_factorize(frame[k]) for k in keys]
    levels = [u for _, u in factorized]
    radix = 1
    for u in levels:
        radix *= max(len(u), 1)
    code = np.zeros(len(frame), dtype=np.int32 if radix < 2 ** 31 - 1 else np.int64)
    missing = None
    # Horner's scheme from the most significant key: code = (…(c_last·m + c)·m + …) + c_first, two
    # in-place passes per key (the narrow key codes are widened in the add's buffer, not copied)
    for c, u in reversed(factorized):
        code *= max(len(u), 1)
        code += c
        neg = c < 0
        if neg.any():
            missing = neg if missing is None else missing | neg
    if missing is not None:
        code[missing] = radix  # a missing key's −1 would have borrowed from the next key
    return code, levels, radix


def strata_counts(frame: pd.DataFrame, flags: Mapping[str, tuple[np.ndarray, np.ndarray]],
                  keys: Iterable[str] = STRATA_KEYS) -> pd.DataFrame:
    """Count numerators and denominators per stratum for every indicator.

    Parameters
    ----------
    frame : person-level frame holding the key columns (one row per person × fy).
    flags : indicator_id -> (numerator bool array, denominator bool array), aligned with frame.
            The numerator is counted only where the denominator holds.
    keys  : stratum columns; rows with a missing key are not counted (the pipeline reports them).

    Returns a long DataFrame: keys..., indicator_id, numerator, denominator (int64), one row per
    stratum × indicator with denominator > 0, indicators in the order given, strata by code.

    Speed: every row's strata key is one integer (`stratum_codes`); each distinct flag is counted
    once with `numpy.bincount` over the codes of its true rows (a denominator shared by several
    indicators, e.g. the 受診者, is counted once); the key columns of the output are decoded once
    per stratum and gathered, not divided out row by row.
    """
    keys = list(keys)
    code, levels, size = stratum_codes(frame, keys)
    bins = size + 1  # the spare bin of rows with a missing key

    counted: dict[bytes, np.ndarray] = {}  # bit-packed flag -> counts per stratum

    def count(flag: np.ndarray) -> np.ndarray:
        """Counts per stratum of one flag; a flag equal to one already counted (the 受診者 denominator
        of many indicators, an empty numerator) is looked up by its bit-packed value, not recounted."""
        packed = np.packbits(flag).tobytes()  # n/8 bytes: cheap next to the count
        if packed not in counted:
            # positions then `take`: a boolean mask index (`code[flag]`) is about twice as slow on flags
            # without long runs; a flag true on every row (e.g. the 対象者 of a clean extract) needs neither
            rows = code if np.count_nonzero(flag) == len(flag) else code.take(np.flatnonzero(flag))
            counted[packed] = np.bincount(rows, minlength=bins)[:size]
        return counted[packed]

    ids, parts = [], []
    present: dict[int, np.ndarray] = {}  # id(denominator counts) -> strata with a count
    for ind_id, (num, den) in flags.items():
        den_v = np.asarray(den, dtype=bool)
        if not den_v.any():
            continue
        d = count(den_v)
        if id(d) not in present:
            present[id(d)] = np.flatnonzero(d)
        nz = present[id(d)]
        ids.append(ind_id)
        parts.append((nz, count(np.asarray(num, dtype=bool) & den_v)[nz], d[nz]))

    if not ids:
        empty = pd.DataFrame({k: pd.Series(dtype=np.int64 if k in ("fy", "sex") else object) for k in keys})
        return empty.assign(indicator_id=pd.Series(dtype=object), numerator=pd.Series(dtype=np.int64),
                            denominator=pd.Series(dtype=np.int64))
    stratum = np.concatenate([p[0] for p in parts])  # indicator-major, strata ascending within an indicator
    out = {}
    rem = np.arange(size, dtype=np.int64)
    for k, u in zip(keys, levels):
        m = max(len(u), 1)
        key_codes = rem % m  # per stratum, not per row
        rem //= m
        codes = key_codes.astype(np.int8 if m <= 127 else np.int16 if m <= 32767 else np.int32)[stratum]
        if k in ("fy", "sex"):
            out[k] = np.asarray(u, dtype=np.int64)[codes] if len(u) else np.array([], dtype=np.int64)
        else:
            # categorical keys: compact, and group-bys downstream work on the integer codes
            out[k] = pd.Categorical.from_codes(codes, categories=pd.Index(np.asarray(u, dtype=str)))
    out["indicator_id"] = pd.Categorical.from_codes(
        np.repeat(np.arange(len(ids), dtype=np.int8 if len(ids) < 127 else np.int32), [len(p[0]) for p in parts]),
        categories=pd.Index(ids))
    out["numerator"] = np.concatenate([p[1] for p in parts])
    out["denominator"] = np.concatenate([p[2] for p in parts])
    return pd.DataFrame(out, copy=False)  # the arrays are new: wrapped, not consolidated into a copy


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

"""Distinct integer keys, and the number of distinct values per key, found by sorting.

The person × month keys of the receipts and prescriptions are millions of int64 codes, most of them
distinct. numpy ≥ 2.3 finds the distinct values of such an array (`np.unique` without
`return_index`/`return_inverse`/`return_counts`) through a hash set, which is 30–40 times slower
here than sorting: 3 million int64 keys, numpy 2.4.6 on the 2-core reference machine, 4.2 s against
0.10 s for `np.sort` (issue 18). These functions sort instead, so they cost the same under every
numpy the project accepts (≥ 2.0), and they return exactly what `np.unique` returns: the distinct
values in ascending order. Used by the UKE import (`inputs.claims_rules`), the partitioned import
(`analysis.partition_import`), the 06 disease groups (`patterns.costs`) and the 07 counts
(`patterns.medication`).

A pair (key, value) is coded as ``key * n_values + value`` (both ≥ 0, value < n_values); the
caller keeps that product inside int64, as for any combined code in hsutils.
"""
from __future__ import annotations

import numpy as np


def unique_sorted(x) -> np.ndarray:
    """The distinct values of the integer array `x` in ascending order (= ``np.unique(x)``)."""
    s = np.sort(np.asarray(x))
    if len(s) < 2:
        return s
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def unique_counts(x) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values of the integer array `x` in ascending order, how often each occurs) (=
    ``np.unique(x, return_counts=True)``, counts as int64)."""
    return _runs(np.sort(np.asarray(x)))


def distinct_per_key(key, value, n_values: int) -> tuple[np.ndarray, np.ndarray]:
    """(the keys present, in ascending order; the number of distinct `value` of each) for int64
    arrays `key` ≥ 0 and 0 ≤ `value` < `n_values`, one pair per row."""
    n = max(int(n_values), 1)
    pairs = unique_sorted(np.asarray(key, dtype=np.int64) * n + np.asarray(value, dtype=np.int64))
    return _runs(pairs // n)


def distinct_counts(key, value, n_values: int, n_keys: int) -> np.ndarray:
    """The number of distinct `value` of each key 0…`n_keys`−1 (0 for a key without rows), as
    `distinct_per_key` counts them: a dense int64 array of length `n_keys`."""
    keys, counts = distinct_per_key(key, value, n_values)
    out = np.zeros(int(n_keys), dtype=np.int64)
    out[keys] = counts
    return out


def _runs(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first value of each run of equal values, run lengths) of the sorted array `s`."""
    if len(s) == 0:
        return s, np.zeros(0, np.int64)
    new = np.empty(len(s), dtype=bool)
    new[0] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    return s[starts], np.diff(np.append(starts, len(s))).astype(np.int64)

"""hsutils.core.distinct: distinct integer keys and distinct values per key, by sorting (issue 18)."""
import numpy as np
import pandas as pd

from hsutils.core import distinct


def test_distinct_values_per_key_by_hand():
    # key 0 has values 1, 1, 3 (two distinct), key 2 has 0, 0 (one), keys 1 and 3 have no row
    key = np.array([2, 0, 0, 2, 0], dtype=np.int64)
    value = np.array([0, 1, 3, 0, 1], dtype=np.int64)
    keys, counts = distinct.distinct_per_key(key, value, 4)
    assert keys.tolist() == [0, 2] and counts.tolist() == [2, 1] and counts.dtype == np.int64
    assert distinct.distinct_counts(key, value, 4, 4).tolist() == [2, 0, 1, 0]
    # the largest value (n_values − 1) stays with its own key, not the next one
    keys, counts = distinct.distinct_per_key(np.array([0, 1]), np.array([3, 0]), 4)
    assert keys.tolist() == [0, 1] and counts.tolist() == [1, 1]
    # no rows; one row; a single value
    keys, counts = distinct.distinct_per_key(np.zeros(0, np.int64), np.zeros(0, np.int64), 5)
    assert len(keys) == 0 and len(counts) == 0 and counts.dtype == np.int64
    assert distinct.distinct_counts(np.zeros(0, np.int64), np.zeros(0, np.int64), 5, 3).tolist() == [0, 0, 0]
    assert distinct.distinct_counts(np.array([1]), np.array([0]), 1, 2).tolist() == [0, 1]
    assert distinct.distinct_counts(np.array([1, 1]), np.array([0, 0]), 0, 2).tolist() == [0, 1]  # n_values 0 → 1


def test_unique_and_counts_by_hand():
    assert distinct.unique_sorted(np.array([5, -1, 5, 3, -1], dtype=np.int64)).tolist() == [-1, 3, 5]
    assert distinct.unique_sorted(np.zeros(0, np.int64)).tolist() == []
    assert distinct.unique_sorted(np.array([7])).tolist() == [7]
    values, counts = distinct.unique_counts(np.array([4, 4, 1, 4, 9]))
    assert values.tolist() == [1, 4, 9] and counts.tolist() == [1, 3, 1] and counts.dtype == np.int64
    values, counts = distinct.unique_counts(np.zeros(0, np.int64))
    assert len(values) == 0 and counts.dtype == np.int64


def test_sorting_gives_what_numpy_unique_and_a_group_by_give():
    rng = np.random.default_rng(18)
    for n, keys_range, n_values in ((1, 1, 1), (50, 5, 3), (20_000, 3_000, 40), (200_000, 150_000, 300)):
        x = rng.integers(-1_000, 1_000, n)
        assert np.array_equal(distinct.unique_sorted(x), np.unique(x))
        u, c = np.unique(x, return_counts=True)
        got = distinct.unique_counts(x)
        assert np.array_equal(got[0], u) and np.array_equal(got[1], c)
        key = rng.integers(0, keys_range, n)
        value = rng.integers(0, n_values, n)
        want = pd.DataFrame({"k": key, "v": value}).groupby("k")["v"].nunique()
        keys, counts = distinct.distinct_per_key(key, value, n_values)
        assert np.array_equal(keys, want.index.to_numpy()) and np.array_equal(counts, want.to_numpy())
        dense = distinct.distinct_counts(key, value, n_values, keys_range)
        assert np.array_equal(dense, want.reindex(range(keys_range), fill_value=0).to_numpy())

"""The compact look-back over the keys of earlier chunks (hsutils.inputs.io.KeyLookback,
docs/design.md §8.4): the first-row rule of duplicates across chunks, in 16 bytes a key."""
import numpy as np
import pandas as pd

from hsutils.inputs import io


def _chunks(seed=3, n_chunks=9, rows=400):
    rng = np.random.default_rng(seed)
    for _ in range(n_chunks):
        yield pd.DataFrame({"person_id": [f"P{v:05d}" for v in rng.integers(0, 300, rows)],
                            "ym": rng.integers(202204, 202208, rows)})


def test_lookback_flags_exactly_the_keys_of_earlier_chunks():
    seen, reference = io.KeyLookback(), set()
    for chunk in _chunks():
        keys = list(zip(chunk["person_id"], chunk["ym"]))
        expected = np.array([k in reference for k in keys])
        got = seen.contains(chunk) if len(seen) else np.zeros(len(chunk), dtype=bool)
        assert (got == expected).all()
        first = ~chunk.duplicated().to_numpy()
        new = first & ~got
        seen.add(chunk[new])
        reference.update(k for k, n in zip(keys, new) if n)
        assert len(seen) == len(reference)
    assert len(seen.runs) <= 4  # runs are merged as they grow (9 chunks)


def test_the_same_key_parsed_to_other_dtypes_is_found():
    seen = io.KeyLookback()
    seen.add(pd.DataFrame({"person_id": pd.Series(["A1", "B2"], dtype=object),
                           "fy": pd.Series([2023, 2024], dtype="int64")}))
    other = pd.DataFrame({"person_id": pd.Series(["B2", "A1", "A1"], dtype="string[pyarrow]"),
                          "fy": pd.Series([2024, 2023, 2022], dtype="Int64")})
    assert seen.contains(other).tolist() == [True, True, False]
    dates = io.KeyLookback()
    dates.add(pd.DataFrame({"person_id": ["A1"], "start": pd.to_datetime(["2023-04-01"])}))
    assert dates.contains(pd.DataFrame({"person_id": ["A1", "A1"], "start": pd.to_datetime(
        ["2023-04-01", "2023-04-02"]).astype("datetime64[s]")})).tolist() == [True, False]


def test_keys_sharing_a_first_hash_are_told_apart_by_the_second():
    class SameFirstHash(io.KeyLookback):
        def _hashes(self, keys):
            h1, h2 = super()._hashes(keys)
            return np.zeros_like(h1), h2

    seen = SameFirstHash()
    seen.add(pd.DataFrame({"person_id": ["A", "B", "C"], "fy": [1, 2, 3]}))
    got = seen.contains(pd.DataFrame({"person_id": ["B", "D", "C"], "fy": [2, 4, 1]}))
    assert got.tolist() == [True, False, False]


def test_merged_runs_stay_sorted_with_the_second_hash_beside_the_first():
    rng = np.random.default_rng(7)
    a1, a2 = np.sort(rng.integers(0, 50, 40).astype(np.uint64)), np.sort(rng.integers(0, 50, 25).astype(np.uint64))
    a, b = io.KeyLookback._merge(a1, a1 * 3, a2, a2 * 3)
    assert (a == np.sort(np.concatenate([a1, a2]))).all() and (b == a * 3).all()


def test_person_period_lookback_gives_the_answers_of_a_set_with_unknown_persons_and_new_months():
    """io.PersonPeriodLookback: one bit per (known person, month); months before and after the
    first chunk's widen the bitmap; persons outside the enrollment go to a KeyLookback."""
    known = pd.Index([f"P{v:05d}" for v in range(0, 300, 2)])  # even ids enrolled, odd ones not

    def codes(values):
        return known.get_indexer(np.asarray(values, dtype=object))

    seen, reference = io.PersonPeriodLookback(codes, len(known), io.ym_months), set()
    rng = np.random.default_rng(5)
    for k in range(9):
        lo = [202304, 202301, 202310, 202210][k % 4]  # later chunks reach earlier and later months
        chunk = pd.DataFrame({"person_id": [f"P{v:05d}" for v in rng.integers(0, 300, 400)],
                              "ym": pd.array(np.asarray(lo + rng.integers(0, 3, 400), dtype=np.int64)
                                             .astype(float), dtype="Float64")})
        keys = list(zip(chunk["person_id"], chunk["ym"].astype(int)))
        expected = np.array([key in reference for key in keys])
        got = seen.contains(chunk) if len(seen) else np.zeros(len(chunk), dtype=bool)
        assert (got == expected).all()
        new = ~chunk.duplicated().to_numpy() & ~got
        seen.add(chunk[new])
        reference.update(key for key, n in zip(keys, new) if n)
        assert len(seen) == len(reference)
    assert seen.first == io.ym_months([202210])[0] and len(seen.bits) == 15  # 2022-10 … 2023-12
    assert seen.bits.shape[1] == (len(known) + 7) // 8 and len(seen.other) > 0  # the odd ids
    # 2023-12 follows 2023-11 and precedes 2024-01: consecutive months are consecutive integers
    assert list(np.diff(io.ym_months([202311, 202312, 202401]))) == [1, 1]


def test_check_gives_contains_then_add_for_both_look_backs():
    """`check(keys, dup)` (one hashing / one person look-up per chunk) marks the rows `contains` marks,
    or-ed with the chunk's own repeats, and adds the others, as `contains` then `add` do; the
    person-period look-back keeps the person codes of the rows it added (`last_codes`)."""
    known = pd.Index([f"P{v:05d}" for v in range(0, 300, 2)])

    def codes(values):
        return known.get_indexer(np.asarray(values, dtype=object))

    for make in (io.KeyLookback, lambda: io.PersonPeriodLookback(codes, len(known), io.ym_months)):
        a, b = make(), make()
        for chunk in _chunks(seed=7):
            within = chunk.duplicated().to_numpy()
            expected = within | (a.contains(chunk) if len(a) else False)
            a.add(chunk[~expected])
            got = b.check(chunk, within)
            assert (got == expected).all() and len(a) == len(b)
            if isinstance(b, io.PersonPeriodLookback):
                assert (b.last_codes == codes(chunk["person_id"][~got])).all()

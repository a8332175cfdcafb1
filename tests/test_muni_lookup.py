"""`claims_rules.MuniLookup`: the municipality of a receipt's person in the fiscal year of its month
(docs/claims_rules.md §5), built once from the enrollment and used for every month."""
from __future__ import annotations

import numpy as np
import pandas as pd

from hsutils.inputs import claims_rules


def _enrollment():
    # A: 2023 in 17201, 2024 in 17202 (a mover); B: only 2022 in 17203; C: a row without a municipality
    return pd.DataFrame({"person_id": ["A", "A", "B", "C", "C"],
                         "fy": [2023, 2024, 2022, 2023, 2024],
                         "muni_code": ["17201", "17202", "17203", None, "17204"]})


def test_the_month_takes_the_row_of_its_fiscal_year_else_the_latest_row():
    lookup = claims_rules.MuniLookup(_enrollment())
    receipts = pd.DataFrame({
        "person_id": ["A", "A", "A", "A", "B", "B", "C", "C", "Z"],
        # 202403 is fiscal 2023, 202404 fiscal 2024; 202604 (fiscal 2026) and 202001 lie beyond the data
        "ym": [202403, 202404, 202604, 202001, 202204, 202504, 202305, 202405, 202404]},
        index=[10, 11, 12, 13, 14, 15, 16, 17, 18])
    got = claims_rules._muni_of(receipts, lookup)
    assert got.index.tolist() == receipts.index.tolist()
    # A: fiscal 2023 → 17201, 2024 → 17202, 2026 and 2019 → latest (2024) 17202;
    # B: 2022 → 17203 and 2025 → latest 17203; C: 2023 has no municipality → latest 17204; Z: unknown
    assert got.tolist()[:8] == ["17201", "17202", "17202", "17202", "17203", "17203", "17204", "17204"]
    assert pd.isna(got.iloc[8])
    # a table is accepted too (the lookup is then built for this call)
    assert claims_rules._muni_of(receipts, _enrollment()).iloc[:8].tolist() == got.iloc[:8].tolist()


def test_no_enrollment_gives_no_municipality():
    receipts = pd.DataFrame({"person_id": ["A"], "ym": [202404]})
    for enrollment in (None, _enrollment().iloc[:0]):
        lookup = claims_rules.MuniLookup(enrollment)
        assert lookup.empty
        assert claims_rules._muni_of(receipts, lookup).isna().all()


def test_the_lookup_equals_the_per_month_reindex_on_random_data():
    """Against the former definition (a (person, fy) MultiIndex per month), numbers as ids too."""
    rng = np.random.default_rng(3)
    n = 400
    enr = pd.DataFrame({"person_id": rng.integers(0, 120, n), "fy": rng.integers(2020, 2025, n),
                        "muni_code": rng.choice(["17201", "17202", "17203"], n)})
    enr = enr.drop_duplicates(["person_id", "fy"])
    rec = pd.DataFrame({"person_id": rng.integers(0, 140, 1000).astype(str),
                        "ym": rng.integers(2019, 2026, 1000) * 100 + rng.integers(1, 13, 1000)})
    e = enr.assign(person_id=enr["person_id"].astype(str))
    fy = np.where(rec["ym"] % 100 >= 4, rec["ym"] // 100, rec["ym"] // 100 - 1)
    by_fy = e.set_index(["person_id", "fy"])["muni_code"]
    want = pd.Series(by_fy.reindex(pd.MultiIndex.from_arrays([rec["person_id"], fy])).to_numpy(), dtype=object)
    latest = e.sort_values("fy").drop_duplicates("person_id", keep="last").set_index("person_id")["muni_code"]
    want = want.fillna(rec["person_id"].map(latest))
    got = claims_rules._muni_of(rec, claims_rules.MuniLookup(enr))
    assert got.isna().tolist() == want.isna().tolist()
    assert got[got.notna()].tolist() == want[want.notna()].tolist()

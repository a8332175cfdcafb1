"""The 県・同規模・国 comparison stored by the shared pass (`references.write_stored_comparisons`,
docs/design.md §8.7): a run reads exactly the rows it would compute, and computes them itself whenever
the stored table does not answer its request."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pyarrow.parquet as pq
import pytest

from hsutils.analysis import areas, references

# seven municipalities; 1万〜2万人: 17203–17207 and 17210 (five peers each, MIN_PEERS)
MASTER = pd.DataFrame({
    "muni_code": ["17201", "17203", "17204", "17205", "17206", "17207", "17210"],
    "name": ["金沢市", "小松市", "輪島市", "珠洲市", "加賀市", "羽咋市", "白山市"],
    "pref_code": ["17"] * 7, "pref_name": ["石川県"] * 7,
    "medical_area_code": ["1702"] * 7, "medical_area": ["石川中央"] * 7,
    "population": [440_000, 12_000, 12_500, 13_000, 14_000, 15_000, 16_000],
})
COLUMNS = ["fy", "muni_code", "district_code", "sex", "age_band", "indicator_id", "numerator", "denominator"]
BANDS = ["40-44", "60-64", "70-74", "75-79"]  # 75-79: outside NDB's 40–74


def _strata() -> pd.DataFrame:
    """Counts that differ by municipality, band and year, for three indicators NDB has (hba1c65), lacks
    (kenshin_rate) or the data's 県 pools thinly (dm_untreated: 1–9 persons in some towns); 17201 with two
    districts (two rows per stratum), 17204 without persons aged 60-64 (its peers' pool has a hole there)."""
    rows = []
    for fy in (2023, 2024):
        for k, muni in enumerate(MASTER["muni_code"]):
            for b, band in enumerate(BANDS):
                if muni == "17204" and band == "60-64":
                    continue
                for sex in (1, 2):
                    den = 40 + 7 * k + 5 * b + 3 * sex + (fy - 2023)
                    districts = ("1720101", "1720102") if muni == "17201" else ("",)
                    for d, district in enumerate(districts):
                        rows.append((fy, muni, district, sex, band, "hba1c65", (den * (3 + b + d)) // 37, den + d))
                        rows.append((fy, muni, district, sex, band, "kenshin_rate", den // 3 + k, den + d))
                        rows.append((fy, muni, district, sex, band, "dm_untreated", (k + b) % 3, 5 + k % 4))
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    _strata().to_parquet(folder / "strata.parquet", index=False)
    MASTER.to_parquet(folder / "municipalities.parquet", index=False)
    references.write_stored_comparisons(folder)
    return folder


def _prepared(folder, with_cache=True):
    return SimpleNamespace(strata=pd.read_parquet(folder / "strata.parquet"),
                           municipalities=pd.read_parquet(folder / "municipalities.parquet"),
                           cache_dir=folder if with_cache else None)


IDS = [["hba1c65", "kenshin_rate", "dm_untreated"], ["dm_untreated", "hba1c65"], ["kenshin_rate"]]


@pytest.mark.parametrize("code", ["17201", "17203", "17000"])
def test_stored_rows_are_the_rows_a_run_computes(cache, code):
    """Every stored subject and indicator list (any order, any subset): the same table, value for value
    and dtype for dtype, as `compare` in the run; the CSV a run writes is byte-identical."""
    stored, computed = _prepared(cache), _prepared(cache, with_cache=False)
    for ids in IDS:
        assert references.stored_comparison(stored, code, 2024, ids) is not None
        got = references.comparison_table(stored, code, 2024, indicator_ids=ids)
        want = references.comparison_table(computed, code, 2024, indicator_ids=ids)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert got.to_csv(index=False) == want.to_csv(index=False)
        assert list(got["indicator_id"].drop_duplicates()) == ids


def test_stored_figures_by_hand(cache):
    """小松市 (17203) against 同規模 (the five other towns of 1万〜2万人, pooled): ref_rate = the peers'
    numerators over their denominators in the bands compared; hba1c65 against 国 leaves out 75-79."""
    t = references.comparison_table(_prepared(cache), "17203", 2024, indicator_ids=["hba1c65"])
    s = _strata()
    peers = s[(s["fy"] == 2024) & s["muni_code"].isin(["17204", "17205", "17206", "17207", "17210"])
              & (s["indicator_id"] == "hba1c65")]
    sim = t[t["reference_kind"] == "同規模"].iloc[0]
    assert sim["reference_label"] == "同規模（1万〜2万人、5市町村）"
    assert sim["ref_rate"] == pytest.approx(peers["numerator"].sum() / peers["denominator"].sum() * 100)
    own = s[(s["fy"] == 2024) & (s["muni_code"] == "17203") & (s["indicator_id"] == "hba1c65")]
    nat = t[t["reference_label"].str.startswith("全国")].iloc[0]
    old = own[own["age_band"] == "75-79"]
    assert (nat["excluded_numerator"], nat["excluded_denominator"]) == (old["numerator"].sum(), old["denominator"].sum())
    assert nat["numerator"] == own["numerator"].sum() - old["numerator"].sum()
    assert "75-79歳" in nat["note"]


def test_user_reference_files_follow_the_stored_rows(cache, tmp_path_factory):
    """A run's own reference CSV is compared in the run and its rows follow the stored ones, as when
    everything is computed in the run."""
    path = tmp_path_factory.mktemp("user") / "ref.csv"
    path.write_text("indicator_id,sex,age_band,numerator,denominator,source,year\n"
                    "hba1c65,1,40-44,10,100,市の独自調査,2023年度\nhba1c65,2,40-44,8,100,市の独自調査,2023年度\n",
                    encoding="utf-8")
    got = references.comparison_table(_prepared(cache), "17203", 2024, reference_files=[path])
    want = references.comparison_table(_prepared(cache, with_cache=False), "17203", 2024, reference_files=[path])
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got["reference_kind"].iloc[-1] == references.KIND_USER


@pytest.mark.parametrize("request_args", [
    dict(subject="17203", fy=2023),             # a year not stored (the latest only)
    dict(subject="17203", fy=[2023, 2024]),     # several years pooled
    dict(subject="17201:01", fy=2024),          # a district
    dict(subject="17203", fy=2024, conf=0.90),  # another confidence level
    dict(subject="17203", fy=2024, min_count=20),  # the run's own suppress_threshold
    dict(subject="17203", fy=2024, ids=["hba1c65", "sbp140"]),  # an NDB item outside the registry
])
def test_requests_the_store_does_not_answer_are_computed(cache, request_args):
    a = dict(request_args)
    ids = a.pop("ids", ["hba1c65"])
    prep = _prepared(cache)
    assert references.stored_comparison(prep, a["subject"], a["fy"], ids, **{k: v for k, v in a.items()
                                                                            if k in ("conf", "min_count")}) is None
    extra = {k: v for k, v in a.items() if k in ("conf", "min_count")}
    got = references.comparison_table(prep, a["subject"], a["fy"], indicator_ids=ids, **extra)
    want = references.comparison_table(_prepared(cache, with_cache=False), a["subject"], a["fy"],
                                        indicator_ids=ids, **extra)
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_changed_strata_or_another_version_are_not_read(cache, monkeypatch):
    """A run whose strata are not the cache's (changed in the notebook) or a cache stored by another
    `STORED_VERSION` computes the comparison itself."""
    prep = _prepared(cache)
    prep.strata = prep.strata[prep.strata["muni_code"] != "17201"]
    assert references.stored_comparison(prep, "17203", 2024, ["hba1c65"]) is None
    t = references.comparison_table(prep, "17203", 2024, indicator_ids=["hba1c65"])
    pool = prep.strata[(prep.strata["fy"] == 2024) & (prep.strata["indicator_id"] == "hba1c65")]
    pref = t[(t["reference_kind"] == "県") & ~t["source"].str.contains("NDB")].iloc[0]
    assert pref["ref_rate"] == pytest.approx(pool["numerator"].sum() / pool["denominator"].sum() * 100)
    monkeypatch.setattr(references, "STORED_VERSION", "0")
    assert references.stored_comparison(_prepared(cache), "17203", 2024, ["hba1c65"]) is None
    meta = json.loads(pq.read_schema(cache / references.STORED_FILE).metadata[b"hsutils_references"])
    assert meta["conf"] == references.STORED_CONF and meta["min_count"] == references.STORED_MIN_COUNT


def test_stored_subjects_are_every_municipality_and_the_prefecture():
    got = [a.code for a in references.stored_subjects(MASTER)]
    assert got == sorted(MASTER["muni_code"]) + ["17"]
    assert all(a.level in (areas.MUNI, areas.PREF) for a in references.stored_subjects(MASTER))

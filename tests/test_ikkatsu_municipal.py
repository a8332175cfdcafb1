"""What a municipal run of notebook 03 shows of the other municipalities (docs/design.md §8.1): per-municipality
counts from each municipality's own partitions (`ikkatsu.municipal_counts`, `ikkatsu.municipal_criteria_strata`),
summed over the reference's municipalities, equal the counts of the whole prefecture's rows."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hsutils.analysis import pipeline
from hsutils.core.schema import age_band
from hsutils.patterns import ikkatsu
from hsutils.rules.programs import IkkatsuParams

FY = 2024
FLAGS = list(ikkatsu.CRITERIA_IDS) + [ikkatsu.ANY_ID]


def _row(pid, fy, muni, age, insurance="後期", level=None, q1=np.nan, q4=np.nan, **flags):
    out = {"person_id": pid, "fy": fy, "muni_code": muni, "district_code": "", "sex": 2, "age": age,
           "insurance": insurance, "kaigo_certified": level is not None, "kaigo_level": level,
           "q1": q1, "q4": q4}
    out.update({f: flags.get(f, False) for f in FLAGS})
    return out


def _two_town_cache(folder: Path) -> pd.DataFrame:
    """2024: 17201 A (要介護1, q1 4 = risk, q4 1 = risk, 口腔), B (no 認定, q1 1), N (国保 70: not counted);
    17324 C (要支援2, q1 not answered), M (no 認定, q1 5 = risk, 健康状態不明者). M moved: in 2023 he was
    at 17201 (no 認定, q1 2), as was A (要支援1, q1 1). 17999 is in the master without rows."""
    rows = [_row("A", FY, "17201", 80, level="要介護1", q1=4, q4=1, ik_oral=True, ik_any=True),
            _row("B", FY, "17201", 77, q1=1), _row("N", FY, "17201", 70, insurance="国保", q1=5),
            _row("C", FY, "17324", 85, level="要支援2"),
            _row("M", FY, "17324", 76, q1=5, ik_health_unknown=True, ik_any=True),
            _row("M", FY - 1, "17201", 75, q1=2), _row("A", FY - 1, "17201", 79, level="要支援1", q1=1)]
    py = pd.DataFrame(rows)
    py["age_band"] = age_band(py["age"].to_numpy())
    pipeline.write_partitioned(py, folder, {"enrollment": py[["person_id", "fy", "muni_code"]]})
    (folder / "meta.json").write_text(json.dumps({"data_hash": "x", "cache_version": "6",
                                                  "fiscal_years": [FY - 1, FY]}), encoding="utf-8")
    pd.DataFrame({"muni_code": ["17201", "17324", "17999"], "name": ["金沢市", "川北町", "空町"],
                  "pref_code": "17"}).to_parquet(folder / "municipalities.parquet")
    for name in ("strata", "districts", "import_summary", "exclusions"):
        pd.DataFrame({"x": [1]}).to_parquet(folder / f"{name}.parquet")
    return py


def _sorted(counts: pd.DataFrame) -> list:
    return sorted(map(tuple, counts[["muni_code", "kind", "item", "respondents", "count"]].values.tolist()))


def test_municipal_counts_hand_worked_with_a_mover(tmp_path, monkeypatch):
    """Hand-worked 2024 (M counted once, at 17324 where he is enrolled in 2024; N is not 後期 75+):
    介護 17201 要介護1 1, 認定なし 1; 17324 要支援2 1, 認定なし 1. q1 17201 2 answered, 1 risk; 17324 1, 1.
    The same as counting the whole prefecture's rows; the second call reads the saved table."""
    whole = _two_town_cache(tmp_path)
    prepared = pipeline.load_prepared(tmp_path, munis=["17324"])
    assert sorted(prepared.person_year["person_id"]) == ["C", "M"]  # the run's own rows only
    got = ikkatsu.municipal_counts(prepared, FY)
    rows = _sorted(got)
    kaigo = [r for r in rows if r[1] == ikkatsu.KIND_KAIGO]
    assert kaigo == sorted([("17201", "kaigo", "認定なし", 0, 1), ("17201", "kaigo", "要介護1", 0, 1),
                            ("17324", "kaigo", "認定なし", 0, 1), ("17324", "kaigo", "要支援2", 0, 1)])
    q = {(r[0], r[2]): r[3:] for r in rows if r[1] == ikkatsu.KIND_QUESTIONNAIRE}
    assert q[("17201", "q1")] == (2, 1) and q[("17324", "q1")] == (1, 1)
    assert q[("17201", "口腔機能")] == (1, 1) and q[("17324", "口腔機能")] == (0, 0)
    assert rows == _sorted(ikkatsu.muni_counts(whole, FY))
    assert _sorted(ikkatsu.municipal_counts(prepared, FY - 1)) == _sorted(ikkatsu.muni_counts(whole, FY - 1))
    # the reference (the prefecture) as the sum of its municipalities = counted from the whole rows
    own = prepared.person_year
    for grouped in (False, True):
        from_counts = ikkatsu.kaigo_levels(own, FY, "17324", "川北町", None, "石川県", None, grouped=grouped,
                                           counts=got)
        from_rows = ikkatsu.kaigo_levels(whole, FY, "17324", "川北町", None, "石川県", None, grouped=grouped)
        pd.testing.assert_frame_equal(from_counts, from_rows)
    ref = from_counts[from_counts["area"] == "石川県"].set_index("level")["count"]
    assert ref.to_dict() == {"認定なし": 2, "要支援1・2": 1, "要介護1・2": 1, "要介護3〜5": 0}
    master = prepared.municipalities
    for munis in (None, ["17201"]):
        pd.testing.assert_frame_equal(
            ikkatsu.questionnaire_profile(own, FY, "17324", master, munis, "基準", counts=got),
            ikkatsu.questionnaire_profile(whole, FY, "17324", master, munis, "基準"))
    p = ikkatsu.questionnaire_profile(own, FY, "17324", master, None, "石川県", counts=got).set_index("item_id")
    assert p.loc["q1", ["respondents", "count", "ref_respondents", "ref_count"]].tolist() == [1, 1, 3, 2]
    monkeypatch.setattr(ikkatsu, "muni_counts", lambda *a, **k: pytest.fail("counted again"))
    pd.testing.assert_frame_equal(ikkatsu.municipal_counts(prepared, FY), got)
    assert len(list((tmp_path / "derived").glob("ikkatsu_counts_*.parquet"))) == 2  # one per year


def _canonical(strata: pd.DataFrame) -> pd.DataFrame:
    keys = ["fy", "muni_code", "district_code", "sex", "age_band", "indicator_id"]
    s = strata.astype({k: str for k in keys})
    return s.sort_values(keys).reset_index(drop=True)[keys + ["numerator", "denominator"]].astype(
        {"numerator": "int64", "denominator": "int64"})


def test_municipal_criteria_strata_hand_worked_with_a_mover(tmp_path):
    """The cached flags (default thresholds): A 口腔 at 17201, M 健康状態不明者 at 17324 (not at 17201, where
    his 2023 row is), each counted once; the sum is the whole prefecture's criteria strata."""
    whole = _two_town_cache(tmp_path)
    prepared = pipeline.load_prepared(tmp_path, munis=["17201"])
    got = ikkatsu.municipal_criteria_strata(prepared, FY)
    want = ikkatsu.criteria_strata(whole, ikkatsu.criteria_flags(whole, FY))
    pd.testing.assert_frame_equal(_canonical(got), _canonical(want))
    by = got.groupby(["muni_code", "indicator_id"])[["numerator", "denominator"]].sum()
    assert by.loc[("17201", "ik_oral")].tolist() == [1, 2]  # A of A, B (N is not 後期 75+)
    assert by.loc[("17324", "ik_health_unknown")].tolist() == [1, 2]  # M of C, M
    assert by.loc[("17201", "ik_health_unknown")].tolist() == [0, 2]


@pytest.fixture
def demo_copy(tmp_path):
    """A copy of the test session's demo cache (the derived tables are written into it)."""
    cache = tmp_path / "cache"
    shutil.copytree(os.environ["HSUTILS_CACHE_DIR"], cache, ignore=shutil.ignore_patterns("derived"))
    return cache


def test_municipal_criteria_strata_on_the_demo_and_a_changed_threshold(demo_copy, prepared):
    """A municipal run's table of every municipality = the criteria strata of the whole prefecture (default
    thresholds: the shared pass's flags; min_age 80: judged again per municipality). Another threshold
    gives another saved table, never the default's."""
    mine = pipeline.load_prepared(demo_copy, with_tables=ikkatsu.TABLES, munis=["17324"])
    assert set(mine.person_year["muni_code"].astype(str)) == {"17324"}
    fy = prepared.fiscal_years[-1]
    whole = prepared.person_year
    default = ikkatsu.municipal_criteria_strata(mine, fy)
    want = ikkatsu.criteria_strata(whole, ikkatsu.criteria_flags(whole, fy, IkkatsuParams(), prepared.tables))
    pd.testing.assert_frame_equal(_canonical(default), _canonical(want))
    stricter = IkkatsuParams(min_age=80)
    changed = ikkatsu.municipal_criteria_strata(mine, fy, stricter)
    assert len(list((demo_copy / "derived").glob("ikkatsu_criteria_*.parquet"))) == 2
    persons = lambda s: int(s.loc[s["indicator_id"] == ikkatsu.ANY_ID, "denominator"].sum())  # noqa: E731
    assert persons(changed) < persons(default)  # 80+ only
    flags = ikkatsu.criteria_flags(whole, fy, stricter, prepared.tables)
    want = _canonical(ikkatsu.criteria_strata(whole, flags, stricter))
    got = _canonical(changed)
    pd.testing.assert_frame_equal(got, want)
    # the prefecture's counts of threshold_counts from the table = counted from the whole rows
    table, _ = ikkatsu.threshold_counts(mine.person_year, mine.tables, fy, stricter, "17324", prefecture=changed)
    full, _ = ikkatsu.threshold_counts(whole, prepared.tables, fy, stricter, "17324")
    pd.testing.assert_frame_equal(table, full)


def test_the_municipal_run_of_03_holds_only_its_municipality(tmp_path):
    """Notebook 03 starts with the default person_rows ("area"): a municipal run's ctx holds the rows of its
    own municipality (and its persons' history), not the reference's."""
    from hsutils.running import notebook

    repo = Path(__file__).resolve().parents[1]
    cells = json.loads((repo / "notebooks" / "03_ikkatsu.ipynb").read_text(encoding="utf-8"))["cells"]
    source = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "notebook.start(" in source and "person_rows" not in source
    for reference in ("pref", "medical_area"):
        ctx = notebook.start("03_ikkatsu", "17324", cache_dir=os.environ["HSUTILS_CACHE_DIR"],
                             out_dir=tmp_path / reference, with_tables=ikkatsu.TABLES, reference_area=reference)
        assert set(ctx.prepared.person_year["muni_code"].astype(str)) == {"17324"}


def test_changed_thresholds_read_the_previous_checkup_of_a_mover_from_his_municipality():
    """The documented rule (docs/design.md §8.1): judged again with other thresholds, 健康状態不明者 reads the
    previous year's checkup from the person_year rows held. M had a checkup in 2023 at 17201 and moved to 17324:
    from the prefecture's rows he is not 健康状態不明者; from 17324's partition (the municipal run and the
    per-municipality table) he is — as S, who had none. The cached flags (default thresholds) are the
    prefecture's."""
    from hsutils.rules import programs

    py = pd.DataFrame({"person_id": ["M", "M", "S"], "fy": [FY - 1, FY, FY], "muni_code": ["17201", "17324", "17324"],
                       "has_kenshin": [True, False, False]})
    claims = pd.DataFrame({"person_id": pd.Series([], dtype=str), "ym": pd.Series([], dtype="int64"),
                           "claim_medical": pd.Series([], dtype=bool), "claim_dental": pd.Series([], dtype=bool)})
    assert programs.health_unknown(py, claims, None, FY).tolist() == [False, True]
    assert programs.health_unknown(py[py["muni_code"] == "17324"], claims, None, FY).tolist() == [True, True]

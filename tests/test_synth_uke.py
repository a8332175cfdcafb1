"""The demo written as UKE files gives back, person by person, the claims the generator intended."""
from __future__ import annotations

import pandas as pd
import pytest

from hsutils.inputs import claims_import, io, uke
from hsutils.demo import synth, synth_uke


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("uke_demo")
    tables = synth.generate_demo(scale=0.01, seed=7)
    summary = synth_uke.write_uke(out, tables, seed=7)
    # one per-file UKE store for the module: the second import (through io) parses nothing again
    cache = tmp_path_factory.mktemp("uke_cache")
    return out, tables, summary, cache


def test_flags_from_uke_equal_the_generator(demo):
    out, tables, _, cache = demo
    enr = tables["enrollment"].assign(fy=tables["enrollment"]["fy"].astype("int64"))
    c = claims_import.load_claims(out, uke.find_uke_files(out), enrollment=enr, cache_dir=cache)
    assert c.counts["receipts_excluded"] == 0 and c.counts["lines_excluded"] == 0
    assert c.counts["receipts_unlinked"] == 0
    got = c.tables["claims_monthly"].reset_index(drop=True)
    want = tables["claims_monthly"].sort_values(["person_id", "ym"]).reset_index(drop=True)
    assert len(got) == len(want)
    for col in want.columns:  # person by person, every column of claims_monthly
        assert (got[col].astype(str).to_numpy() == want[col].astype(str).to_numpy()).all(), col
    # the variety the rules must see through is really there
    assert c.report["n_suspected"] > 0 and c.report["n_uncoded_matched"] > 0
    assert (c.tables["prescriptions"]["dispensed"] == "院外").any()
    assert set(c.tables["medical_costs"]["setting"]) == {"入院", "入院外", "歯科", "調剤"}
    # planted for notebook 07 (docs/rules.md §10): the same 成分 from a second clinic, two hypnotics
    from hsutils.patterns import medication

    m = medication.monthly_counts(c.tables["prescriptions"], medication.medication_params())
    assert (m["n_dup_classes"] > 0).any() and (m["n_hypnotics"] >= 2).any()


# sha256 over (name, bytes) of the uke/*.UKE files of `demo` (scale 0.01, seed 7), as the writer of
# main wrote them before it built its lines in Arrow: the demo's files must stay byte-identical
UKE_FILES_SHA256 = "34a8c1454acc3b783adf2c9f2acd57b85b407771a3a203a6a5ec8c547a5fd946"


def test_uke_files_are_byte_identical_to_the_reference(demo):
    import hashlib

    out, _, _, _ = demo
    h = hashlib.sha256()
    files = sorted((out / "uke").glob("*.UKE"))
    for p in files:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    assert len(files) == 144 and h.hexdigest() == UKE_FILES_SHA256
    first = files[0].read_bytes()
    assert first.endswith(b"\r\n\x1a") and first.decode("cp932").startswith("YK,2,17,4,")


def test_demo_files_hold_no_names_and_load_through_io(demo, tmp_path):
    out, tables, summary, cache = demo
    assert "ファイル" in summary
    for name in ("enrollment", "kenshin"):
        t = io.read_table  # the loader reads the CSVs written by synth
        tables[name].to_csv(out / f"{name}.csv", index=False, header=[c.ja for c in io.TABLES[name].columns])
    ds = io.load_dataset(out, cache_dir=cache)
    assert len(ds.tables["claims_monthly"]) == len(tables["claims_monthly"])
    for name in ("claims_monthly", "diagnoses", "prescriptions", "medical_costs"):
        assert synth_uke.PLACEHOLDER_NAME not in ds.tables[name].astype(str).to_csv()

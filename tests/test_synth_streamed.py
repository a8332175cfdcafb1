"""The streamed large-scale demo (hsutils.demo.synth.write_demo_streamed): the same model as
`generate_demo`, block by block, read back by the product's importer."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hsutils.demo import synth
from hsutils.inputs import io

BLOCK = 0.05
SCALE = 2 * BLOCK  # two blocks


def test_block_scales():
    assert synth.stream_block_scales(40) == [1.0] * 40
    assert synth.stream_block_scales(1) == [1.0]
    assert synth.stream_block_scales(0.5) == [0.5]
    assert synth.stream_block_scales(2.5) == pytest.approx([2.5 / 3] * 3)  # ceil(2.5) equal blocks
    assert synth.stream_block_scales(0.2, block_scale=0.05) == pytest.approx([0.05] * 4)
    with pytest.raises(ValueError):
        synth.stream_block_scales(0)


def test_one_block_is_the_demo():
    """A scale no larger than the block is generate_demo itself, row for row."""
    ((b, s, tables),) = list(synth.iter_demo_blocks(0.03, seed=2024))
    assert (b, s) == (0, 0.03)
    demo = synth.generate_demo(0.03, seed=2024)
    for name in synth.OUTPUT_TABLES:
        pd.testing.assert_frame_equal(tables[name], demo[name], obj=name)


@pytest.fixture(scope="module")
def blocks():
    return [t for _, _, t in synth.iter_demo_blocks(SCALE, seed=2024, block_scale=BLOCK)]


@pytest.fixture(scope="module")
def streamed(tmp_path_factory):
    out = tmp_path_factory.mktemp("streamed")
    done = []
    text = synth.write_demo_streamed(out, SCALE, seed=2024, block_scale=BLOCK,
                                     progress=lambda b, n: done.append((b, n)))
    assert done == [(1, 2), (2, 2)]
    assert "2 ブロック" in text
    return out, io.load_dataset(out)


def test_streamed_files_are_read_by_the_importer(streamed, blocks):
    out, ds = streamed
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{t}.parquet" for t in synth.OUTPUT_TABLES)
    assert ds.exclusions.empty and ds.warnings == []
    assert (ds.summary["read"] == ds.summary["kept"]).all()
    for name in synth.OUTPUT_TABLES:
        expected = len(blocks[0][name]) if name in ("municipalities", "districts") else \
            sum(len(t[name]) for t in blocks)
        assert len(ds.tables[name]) == expected, name
    # the files hold the blocks in order, block 2 numbering its persons after block 1's
    first, second = (t["enrollment"]["person_id"] for t in blocks)
    assert first.max() < second.min()
    pd.testing.assert_series_equal(ds.tables["enrollment"]["person_id"].astype(object),
                                   pd.concat([first, second], ignore_index=True).astype(object), check_names=False)
    assert not ds.tables["enrollment"].duplicated(["person_id", "fy"]).any()


def test_csv_format_writes_one_header(tmp_path):
    """CSV blocks are appended under one header row and import to the same table as the Parquet file."""
    synth.write_demo_streamed(tmp_path / "csv", 0.002, block_scale=0.001, fmt="csv")
    synth.write_demo_streamed(tmp_path / "pq", 0.002, block_scale=0.001, fmt="parquet")
    lines = (tmp_path / "csv" / "enrollment.csv").read_text(encoding="utf-8").splitlines()
    assert sum(line.startswith("被保険者") for line in lines) == 1
    a = io.read_table(tmp_path / "csv" / "enrollment.csv", "enrollment")
    b = io.read_table(tmp_path / "pq" / "enrollment.parquet", "enrollment")
    assert a.n_dropped == b.n_dropped == 0 and len(a.data) == len(lines) - 1
    pd.testing.assert_frame_equal(a.data, b.data)


def test_interrupted_generation_leaves_no_files(tmp_path, monkeypatch):
    real = synth.generate_demo

    def failing(scale, seed, first_id):
        if first_id > 1:
            raise RuntimeError("disk full")
        return real(scale=scale, seed=seed, first_id=first_id)

    monkeypatch.setattr(synth, "generate_demo", failing)
    with pytest.raises(RuntimeError):
        synth.write_demo_streamed(tmp_path, 0.02, block_scale=0.01)
    assert list(tmp_path.iterdir()) == []


def _summary(t: dict[str, pd.DataFrame], fy: int = 2024) -> pd.DataFrame:
    """Per municipality in `fy`: insured persons, 健診 participants, claim-months of the persons."""
    e = t["enrollment"][t["enrollment"]["fy"] == fy]
    k = t["kenshin"][t["kenshin"]["fy"] == fy]
    ym = t["claims_monthly"]["ym"]
    c = t["claims_monthly"][(ym >= fy * 100 + 4) & (ym <= (fy + 1) * 100 + 3)]
    return pd.DataFrame({"persons": e.groupby("muni_code").size(),
                         "kenshin": k.groupby("muni_code")["person_id"].nunique(),
                         "claims": c.groupby("muni_code").size()}).fillna(0)


def test_blocks_follow_the_demo_distribution(streamed):
    """Two blocks of scale 0.05 against generate_demo(0.1): persons per municipality, 健診 rate and
    claim-months per person agree within sampling error (|z| < 4 per municipality and prefecture),
    for the municipalities whose size the minimum of MIN_PER_MUNI expected persons does not raise
    at scale 0.05 (below it a small town is kept at 40 persons in each block)."""
    _, ds = streamed
    s = _summary(ds.tables)
    d = _summary(synth.generate_demo(SCALE, seed=2024))
    residents = synth._residents_2024(synth.load_demo_population(), BLOCK)
    insured = (residents * synth._insured_share()).sum(axis=(1, 2))
    raised = np.isclose(insured, synth.MIN_PER_MUNI)
    munis = np.array(sorted(synth.load_demo_population()["muni_code"].unique()))[~raised]
    assert len(munis) >= 12
    s, d = s.loc[munis], d.loc[munis]
    z_persons = (s["persons"] - d["persons"]) / np.sqrt(s["persons"] + d["persons"])
    assert (z_persons.abs() < 4).all(), z_persons
    rate_s, rate_d = s["kenshin"] / s["persons"], d["kenshin"] / d["persons"]
    pooled = (s["kenshin"] + d["kenshin"]) / (s["persons"] + d["persons"])
    z_rate = (rate_s - rate_d) / np.sqrt(pooled * (1 - pooled) * (1 / s["persons"] + 1 / d["persons"]))
    assert (z_rate.abs() < 4).all(), z_rate
    per_s, per_d = s["claims"] / s["persons"], d["claims"] / d["persons"]
    assert ((per_s / per_d - 1).abs() < 0.15).all(), per_s / per_d
    tot_s, tot_d = s.sum(), d.sum()
    assert abs(tot_s["persons"] / tot_d["persons"] - 1) < 0.03
    assert abs(tot_s["kenshin"] / tot_s["persons"] - tot_d["kenshin"] / tot_d["persons"]) < 0.015
    assert abs((tot_s["claims"] / tot_s["persons"]) / (tot_d["claims"] / tot_d["persons"]) - 1) < 0.03


def test_cli_streamed_demo(tmp_path, capsys):
    from hsutils.running import cli

    assert cli.main(["demo", "--out", str(tmp_path), "--scale", "0.002", "--streamed", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "ブロック 1/1 完了" in out and "形式 csv" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{t}.csv" for t in synth.OUTPUT_TABLES)

"""Reports name only final, relative output locations (issue 25 §1).

A tiny real batch (the session's small demo data, one municipality, the notebooks that print
where their outputs went) is run and every exported HTML report is scanned: no absolute path of
the machine (the run folder, the repository) and no staging folder `.tmp` may appear.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from hsutils.core import settings
from hsutils.running import batch, notebook

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["01", "02", "04", "05"]  # those that print their output folder / the confidential lists
MUNI = "17201"  # 金沢市: has districts, so 02 and 04 print every location they have


def test_report_folder_is_relative_to_the_outputs_parent(tmp_path):
    run = tmp_path / "outputs" / "demo"
    final = run / "17201_金沢市" / "04_nephropathy"
    assert settings.report_folder(final, run) == "outputs/demo/17201_金沢市/04_nephropathy"


def test_shown_path_never_absolute(tmp_path, monkeypatch):
    monkeypatch.delenv(settings.ENV_REPORT_FOLDER, raising=False)
    monkeypatch.delenv(settings.ENV_OUT_DIR, raising=False)
    inside = settings.work_root() / "outputs" / "interactive" / "17201_金沢市" / "04_nephropathy"
    assert settings.shown_path(inside) == "outputs/interactive/17201_金沢市/04_nephropathy"
    # a folder anywhere else: only its name (never the machine's path)
    assert settings.shown_path(tmp_path / "x" / "mine") == "mine"
    monkeypatch.setenv(settings.ENV_OUT_DIR, str(tmp_path / "outs"))
    (tmp_path / "outs").mkdir()
    assert settings.shown_path(tmp_path / "outs" / "r" / "a" / "n") == "outs/r/a/n"
    assert settings.shown_out_dir(tmp_path / "outs" / "r" / "a" / "n") == "outs/r/a/n"
    monkeypatch.setenv(settings.ENV_REPORT_FOLDER, "outputs/demo/17201_金沢市/04_nephropathy")
    staging = tmp_path / "outs" / ".tmp" / "04_x"
    assert settings.shown_out_dir(staging) == "outputs/demo/17201_金沢市/04_nephropathy"
    assert settings.shown_path(staging / "a.yaml") == "outs/.tmp/04_x/a.yaml"  # files: never the env value
    assert settings.shown_path(REPO / "parameters" / "x.yaml") == "parameters/x.yaml"


def test_context_location(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.ENV_REPORT_FOLDER, "outputs/demo/17201_金沢市/04_nephropathy")
    ctx = notebook.start("04_nephropathy", MUNI, out_dir=tmp_path / ".tmp" / "04_nephropathy_17201_abc")
    assert ctx.location() == "outputs/demo/17201_金沢市/04_nephropathy"
    assert ctx.location("confidential", "referral_list.csv") == \
        "outputs/demo/17201_金沢市/04_nephropathy/confidential/referral_list.csv"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, demo_data_dir, session_cache_copier):
    root = tmp_path_factory.mktemp("locations")
    run_yaml = root / "run.yaml"
    run_yaml.write_text(yaml.safe_dump({
        "run_name": "demo", "data_dir": str(demo_data_dir), "out_dir": str(root / "outputs"),
        "notebook_dir": str(REPO / "notebooks"), "notebooks": NOTEBOOKS, "municipalities": [MUNI],
        "timeout_seconds": 600}, allow_unicode=True), encoding="utf-8")
    status = batch.run_batch(run_yaml, jobs=2, prepare=session_cache_copier)  # the session's shared pass
    return root / "outputs" / "demo", status


def test_every_report_names_only_final_relative_locations(demo_run):
    run_dir, status = demo_run
    assert status == 0, (run_dir / "logs").glob("*.log")
    reports = sorted(run_dir.rglob("*.html"))
    stems = {p.stem for p in reports}
    assert {"01_prefecture_overview", "02_large_insurer", "04_nephropathy", "05_evaluation"} <= stems
    assert not (run_dir / ".tmp").exists()
    forbidden = {str(run_dir.resolve()), str(run_dir.parent.resolve()), str(REPO), "/.tmp/", ".tmp/"}
    for report in reports:
        html = report.read_text(encoding="utf-8")
        found = [s for s in forbidden if s in html]
        assert not found, f"{report.name}: {found}"
        if report.stem in {"01_prefecture_overview", "02_large_insurer", "04_nephropathy", "05_evaluation"}:
            final = report.parent.relative_to(run_dir.parent.parent).as_posix()
            assert f"出力フォルダ: {final}" in html or f"出力フォルダ:</span> {final}" in html \
                or re.search(r"出力フォルダ:\s*" + re.escape(final), html), report.name
    # displayed tables (issue 25 §4): no True/False, counts with thousands separators
    for report in reports:
        cells = re.findall(r"<td[^>]*>([^<]*)</td>", report.read_text(encoding="utf-8"))
        assert not {"True", "False"} & {c.strip() for c in cells}, report.name
    overview_html = next(p for p in reports if p.stem == "01_prefecture_overview").read_text(encoding="utf-8")
    tds = [c.strip() for c in re.findall(r"<td[^>]*>([^<]*)</td>", overview_html)]
    assert any(re.fullmatch(r"\d{1,3}(,\d{3})+", c) for c in tds)  # e.g. persons per year
    assert not any(re.fullmatch(r"\d+\.\d{3,}", c) for c in tds)  # no 15.966387
    # 04 says where the confidential lists went: the final folder, relative
    nep = next(p for p in reports if p.stem == "04_nephropathy")
    assert f"{nep.parent.relative_to(run_dir.parent.parent).as_posix()}/confidential に保存しました" \
        in nep.read_text(encoding="utf-8")
    assert settings.ENV_REPORT_FOLDER not in os.environ  # the batch cleans up after each run


# ------------------------------------------------------------------ a first run explains itself (issue 25 §2)
def test_first_run_says_what_it_prepares_with_progress(tmp_path, capsys):
    data, cache = tmp_path / "demo", tmp_path / "confidential" / "cache"
    notebook.start("04_nephropathy", MUNI, data_dir=data, cache_dir=cache, out_dir=tmp_path / "out",
                   demo_scale=0.01)
    out, err = capsys.readouterr()
    assert "【初回のみ】" in out and "次回からはキャッシュを使うので数秒で始まります" in out
    assert notebook.FirstRun.SECONDS_HINT in out
    # the demo differs from `make demo`: said, with the size, and that figures differ
    assert "`make demo` の 0.01 倍の規模（人数が約1%）" in out and "一致せず" in out
    assert str(tmp_path) not in out  # the data folder is named without the machine's path
    # the progress bar went through every stage (demo + pipeline.PREPARE_STAGES) and finished
    total = 1 + len(notebook.pipeline.PREPARE_STAGES)
    assert f"準備完了: {total}/{total} 段階" in err
    # the second time: everything ready, nothing printed
    notebook.start("04_nephropathy", MUNI, data_dir=data, cache_dir=cache, out_dir=tmp_path / "out")
    assert capsys.readouterr() == ("", "")


def test_first_run_stage_counting():
    calls = []

    class Bar:
        n, total = 0, 4

        def update(self, k):
            self.n += k
            calls.append(("update", k))

        def set_description(self, d):
            calls.append(("desc", d))

        def close(self):
            calls.append(("close",))

    first = notebook.FirstRun("data/demo")
    first.bar = Bar()
    with first:
        for stage in notebook.pipeline.PREPARE_STAGES:
            first.stage(stage)
    # stage k completes stage k−1; leaving completes the last one
    assert [c for c in calls if c[0] == "update"] == [("update", 1)] * 4
    assert first.bar.n == 4 and calls[-1] == ("close",)

"""The batch's notebook runs on a Dask cluster (issue 17 item 3, docs/design.md §8.6).

A real `LocalCluster` of 2 worker processes, started here and handed to the batch as a scheduler
address (as `hsutils batch --scheduler tcp://…` does), runs notebooks on the session's small demo;
the same runs on the local pool (`--jobs 2`) must give the same manifest and byte-identical tables.
To stay fast the notebook is a short 04 (its start and its first table and chart, through the
library as the real one) and the shared pass is not re-run: `prepare` copies the session's demo cache.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from hsutils.analysis import cluster
from hsutils.running import batch, dispatch
from test_batch import MUNI_BODY, _manifest, _notebook, project  # noqa: F401  (not the pinned library: workers check it)

import nbformat

NOTEBOOKS = ["04"]
MUNIS = ["17201", "17203"]
SHORT_04 = [("parameters", 'muni_code = "17201"\nmuni_name = None\nfiscal_year = None\ndata_dir = None\n'
                           'cache_dir = None\nout_dir = None\nsuppress_threshold = 10\nrun_name = "interactive"\n'
                           'interactive = False'),
            (None, "import matplotlib.pyplot as plt\n"
                   "from hsutils.patterns import nephropathy as nep\n"
                   "from hsutils.running import notebook\n"
                   "ctx = notebook.start('04_nephropathy', muni_code, fiscal_year, data_dir=data_dir, cache_dir=cache_dir,\n"
                   "                     out_dir=out_dir, suppress_threshold=suppress_threshold, with_tables=True,\n"
                   "                     run_name=run_name, muni_name=muni_name)\n"
                   "fy, params = ctx.fiscal_year, nep.nephropathy_params()\n"
                   "rows = nep.area_rows(ctx.prepared.person_year, ctx.muni_code, fy, '国保')\n"
                   "claims = nep.area_claims(ctx.prepared.tables.get('claims_monthly'), rows)\n"
                   "flow = nep.flow_counts(rows, claims, fy, params)\n"
                   "ctx.save_table(nep.flow_table(flow, ctx.suppress_threshold), 'flow_counts', count_cols=['count'],\n"
                   "               relations=nep.flow_relations(flow))\n"
                   "fig = nep.flow_figure(flow, f'対象者の概数把握（{ctx.muni_name}）',\n"
                   "                      ctx.footer(nep.population_label('国保')), ctx.suppress_threshold)\n"
                   "ctx.save_figure(fig, 'flow_chart')\n"
                   "plt.close(fig)\n"
                   "ctx.finish()")]  # as every notebook ends: waits for the figure writer (docs/design.md §7)


@pytest.fixture(scope="module")
def local_cluster():
    """2 worker processes of 1 thread; a run whose worker dies is not retried (allowed-failures 0)."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                         memory_limit=0) as c:
        yield c


def _params(tmp_path: Path, demo_data_dir: Path, name: str) -> Path:
    nbdir = tmp_path / "nbs"
    if not nbdir.exists():
        nbdir.mkdir()
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(src) for _, src in SHORT_04]
        nb.cells[0].metadata["tags"] = ["parameters"]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, str(nbdir / "04_nephropathy.ipynb"))
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"run_name": name, "data_dir": str(demo_data_dir), "out_dir": str(tmp_path / "out"),
                                    "notebook_dir": str(nbdir), "notebooks": NOTEBOOKS, "municipalities": MUNIS},
                                   allow_unicode=True), encoding="utf-8")
    return path


def _tables(run_dir: Path) -> dict[str, bytes]:
    """The CSV tables, byte for byte, and the workbooks by name (an xlsx carries its save time)."""
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() if p.suffix == ".csv" else p.suffix
            for p in sorted(run_dir.glob("*_*/*/tables/*"))}


def _runs(run_dir: Path) -> dict[str, dict]:
    keep = ("status", "notebook", "level", "muni_code", "muni_name", "report", "log", "error", "resume_key")
    runs = json.loads((run_dir / batch.MANIFEST_NAME).read_text(encoding="utf-8"))["runs"]
    return {k: {f: e.get(f) for f in keep} for k, e in runs.items()}


def test_runs_on_a_two_worker_cluster_equal_the_local_pool(tmp_path, demo_data_dir, local_cluster, monkeypatch,
                                                          session_cache_copier):
    monkeypatch.delenv(cluster.ENV_SCHEDULER, raising=False)
    assert batch.run_batch(_params(tmp_path, demo_data_dir, "local"), jobs=2, prepare=session_cache_copier) == 0
    monkeypatch.setenv(cluster.ENV_SCHEDULER, local_cluster.scheduler_address)  # = `--scheduler`
    assert batch.run_batch(_params(tmp_path, demo_data_dir, "dask"), prepare=session_cache_copier) == 0

    local, dask = tmp_path / "out" / "local", tmp_path / "out" / "dask"
    manifest = json.loads((dask / batch.MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["batches"][-1]["executor"] == f"dask {local_cluster.scheduler_address}"
    assert {e["worker"] for e in manifest["runs"].values()} <= set(local_cluster.scheduler_info["workers"])
    runs = _runs(dask)
    assert len(runs) == len(NOTEBOOKS) * len(MUNIS) and {e["status"] for e in runs.values()} == {"ok"}
    local_runs = _runs(local)
    for key in runs:  # the resume key names the run folder's paths: everything else is equal
        runs[key].pop("resume_key"), local_runs[key].pop("resume_key")
    assert runs == local_runs
    tables = _tables(dask)
    assert len(tables) == 2 * len(MUNIS) and tables == _tables(local)  # a CSV and the xlsx each
    figures = sorted(p.relative_to(dask).as_posix() for p in dask.glob("*_*/*/figures/*.png"))
    assert len(figures) == len(MUNIS)
    assert figures == sorted(p.relative_to(local).as_posix() for p in local.glob("*_*/*/figures/*.png"))
    assert all((dask / e["report"]).is_file() for e in runs.values())
    assert not (dask / ".tmp").exists() or not any((dask / ".tmp").iterdir())


def test_a_cluster_without_the_shared_folders_is_refused_before_running():
    """`check_workers`: every problem of every worker, in Japanese, before the shared pass."""
    good = {"host": "n1", "version": "x", "library": batch.library_fingerprint(), "python": "3.12",
            "font": True, "missing": [], "kernel": True, "writable": True}
    import hsutils

    good["version"] = hsutils.__version__
    bad = {**good, "host": "n2", "version": "0.0.1", "font": False, "missing": ["/shared/data"], "writable": False}
    problems = dispatch.check_workers(None, [], "python3", "/shared/out/.tmp",
                                      reports={"tcp://a:1": good, "tcp://b:2": bad})
    assert problems == [
        f"ワーカー tcp://b:2（n2）: hsutils が一括実行を始めたマシンと違います（ワーカー 0.0.1、こちら {hsutils.__version__}）。同じ版を入れてください",
        "ワーカー tcp://b:2（n2）: 日本語フォント（matplotlib-fontja）がありません",
        "ワーカー tcp://b:2（n2）: /shared/data が見えません（共有フォルダを同じパスでマウントしてください）",
        "ワーカー tcp://b:2（n2）: 出力フォルダ /shared/out/.tmp に書き込めません"]
    assert dispatch.check_workers(None, [], reports={})[0].startswith("スケジューラにワーカーが1台も接続していません")


# the municipal test notebook of tests/test_batch.py, which also kills its Dask worker (the kernel's
# grandparent: kernel → the run's child process → worker) for the municipality HSUTILS_TEST_KILL_WORKER
KILL_BODY = MUNI_BODY.replace("import os, time\n", """import os, time, signal, psutil
if os.environ.get("HSUTILS_TEST_KILL_WORKER") == muni_code:
    os.kill(psutil.Process().parent().parent().pid, signal.SIGKILL)
    time.sleep(60)
""", 1)


def _only(run_yaml: Path, notebooks: list[str], municipalities) -> None:
    """Narrow the project's run file to the runs a test needs (each run is a kernel start: the
    file's time is mostly kernel starts)."""
    p = yaml.safe_load(run_yaml.read_text(encoding="utf-8"))
    run_yaml.write_text(yaml.safe_dump({**p, "notebooks": notebooks, "municipalities": municipalities},
                                       allow_unicode=True), encoding="utf-8")


def test_a_dying_worker_fails_its_run_and_the_batch_goes_on(project, local_cluster, monkeypatch):
    root, run_yaml = project
    _only(run_yaml, ["02"], "all")  # the prefecture notebook adds nothing here
    _notebook(root / "nbs" / "02_large_insurer.ipynb", KILL_BODY)
    monkeypatch.setenv(cluster.ENV_SCHEDULER, local_cluster.scheduler_address)
    monkeypatch.setenv("HSUTILS_TEST_KILL_WORKER", "17201")  # HSUTILS_*: goes with every run to the workers
    assert batch.run_batch(run_yaml) == batch.EXIT_RUNS_FAILED
    runs = _manifest(root / "out" / "t")["runs"]
    assert {k: e["status"] for k, e in runs.items()} == {
        "02_large_insurer/17201": "failed",
        "02_large_insurer/17202": "failed", "02_large_insurer/17203": "ok"}
    assert runs["02_large_insurer/17201"]["error"].startswith("実行中のワーカーが終了しました")
    assert "健診データが壊れています" in runs["02_large_insurer/17202"]["error"]  # the notebook's own error
    assert (root / "out" / "t" / "17203_小松市" / "02_large_insurer" / "tables" / "result.csv").is_file()
    assert not (root / "out" / "t" / "17201_金沢市" / "02_large_insurer").exists()


def test_interrupting_the_batch_stops_the_runs_on_the_workers(project, local_cluster, monkeypatch):
    """Ctrl-C: the futures are cancelled, the worker stops the run's kernel and removes its staging
    folder; the run stays 未実行 (exit code 3, `--resume` continues)."""
    root, run_yaml = project
    _only(run_yaml, ["02"], ["17203"])  # the interrupted run alone
    monkeypatch.setenv(cluster.ENV_SCHEDULER, local_cluster.scheduler_address)
    monkeypatch.setenv("HSUTILS_TEST_HANG", "17203")  # this run sleeps 300 s
    log = root / "out" / "t" / "logs" / "02_large_insurer_17203.log"

    def interrupt_once_the_run_computes() -> None:
        for _ in range(600):
            if log.exists() and "パラメータ" in log.read_text(encoding="utf-8"):
                time.sleep(3)  # the kernel has started and runs the cells
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.2)

    threading.Thread(target=interrupt_once_the_run_computes, daemon=True).start()
    assert batch.run_batch(run_yaml) == batch.EXIT_INTERRUPTED
    assert _manifest(root / "out" / "t")["runs"]["02_large_insurer/17203"]["status"] == "pending"
    for _ in range(150):  # the worker notices within POLL_SECONDS; the run then cleans up
        if "中断されました" in log.read_text(encoding="utf-8"):
            break
        time.sleep(0.2)
    assert "中断されました" in log.read_text(encoding="utf-8")
    time.sleep(1)
    assert not list((root / "out" / "t" / ".tmp").glob("02_large_insurer_17203_*"))
    assert not (root / "out" / "t" / "17203_小松市" / "02_large_insurer").exists()


def test_hsutils_workers_checks_what_the_workers_see(tmp_path, local_cluster, capsys):
    from hsutils.running import cli

    address = local_cluster.scheduler_address
    assert cli.main(["workers", str(tmp_path), "--scheduler", address]) == 0
    out = capsys.readouterr().out
    assert f"スケジューラ {address} のワーカー 2 台" in out and "日本語フォント あり" in out
    assert cli.main(["workers", str(tmp_path / "未共有"), "--scheduler", address]) == 1
    assert f"{tmp_path / '未共有'} が見えません（共有フォルダを同じパスでマウントしてください）" in capsys.readouterr().out

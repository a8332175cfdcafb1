"""Benchmark of the papermill batch runner (issue 5): the demo batch with --jobs 1 and the default.

Prints wall time, median seconds per notebook-run, the speed-up, where the time of a run goes
(kernel start + papermill overhead, first cell = imports, the remaining cells = computation,
HTML export) and how many times the shared heavy pass ran in each batch (from the manifest).

    .venv/bin/python benchmarks/batch.py                 # 19 municipalities × municipal notebooks
    .venv/bin/python benchmarks/batch.py --munis 3       # quick check
    .venv/bin/python benchmarks/batch.py --all-notebooks # include the prefecture-level notebook
    .venv/bin/python benchmarks/batch.py --munis 2 --serial-only --profile   # --jobs 1 only, slowest cells

With warm workers (docs/design.md §8.5) the kernel start and imports are paid in the background;
`HSUTILS_WARM_KERNELS=0` in the environment measures the cold path of the same code.

Printed figures, not a timed test (docs/design.md §8). Needs the notebooks and the demo data
(created with `hsutils demo` when data/demo is missing).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def ensure_demo_data(data_dir: Path) -> None:
    if (data_dir / "enrollment.csv").exists():
        return
    print(f"デモデータを作成します: {data_dir}")
    subprocess.run([sys.executable, "-m", "hsutils.running.cli", "demo", "--out", str(data_dir)], check=True, cwd=REPO)


def write_run_yaml(folder: Path, data_dir: Path, munis: int | None, all_notebooks: bool,
                   notebook_dir: Path | None = None) -> Path:
    from hsutils.running import params

    # municipal runs: the notebooks of level "muni" and "both" (06 and 08 also run per municipality)
    notebooks = "all" if all_notebooks else [s.id for s in params.NOTEBOOKS.values() if s.level in ("muni", "both")]
    master = params.municipality_master(data_dir, params.load_raw(None)["prefecture"])
    municipalities = "all" if munis is None else sorted(master)[:munis]
    cfg = {"run_name": "bench", "data_dir": str(data_dir), "notebooks": notebooks,
           "municipalities": municipalities}
    if notebook_dir is not None:
        cfg["notebook_dir"] = str(notebook_dir)
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def run_batch_cli(run_yaml: Path, out: Path, jobs: int | None) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "hsutils.running.cli", "batch", str(run_yaml), "--out", str(out)]
    if jobs is not None:
        cmd += ["--jobs", str(jobs)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wall = time.perf_counter() - t0
    print(proc.stdout.strip())
    return wall, proc.returncode


def phase_medians(runs: list[dict]) -> dict[str, float]:
    """Median seconds per phase of a notebook-run, from the timings the workers record."""
    def med(values):
        values = [v for v in values if v is not None and v == v]
        return statistics.median(values) if values else float("nan")

    t = [r.get("timing") or {} for r in runs]
    return {
        "run": med([r.get("seconds") for r in runs]),
        "kernel_start_and_overhead": med([x.get("papermill", 0) - x.get("cells", 0) for x in t]),
        "imports_first_cell": med([x.get("first_cell") for x in t]),
        "computation_other_cells": med([x.get("cells", 0) - x.get("first_cell", 0) for x in t]),
        "html_export": med([x.get("html") for x in t]),
    }


def cell_profile(out: Path, runs: list[dict], top: int = 8) -> None:
    """Where the time of the median municipal run goes, cell by cell (papermill's durations in the
    executed notebook of the run folder): the slowest cells with their first source line."""
    ok = sorted((r for r in runs if r["status"] == "ok" and r.get("seconds") is not None),
                key=lambda r: r["seconds"])
    if not ok:
        return
    median_run = ok[len(ok) // 2]
    executed = out / "bench" / Path(median_run["report"]).with_suffix(".ipynb")
    try:
        nb = json.loads(executed.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    cells = []
    for i, c in enumerate(nb.get("cells", [])):
        d = c.get("metadata", {}).get("papermill", {}).get("duration")
        if c.get("cell_type") == "code" and isinstance(d, (int, float)):
            src = "".join(c.get("source", "")).strip().splitlines()
            cells.append((d, i, src[0][:70] if src else ""))
    total = sum(d for d, _, _ in cells)
    print(f"    中央値の実行 {median_run['notebook']} × {median_run['muni_code']}: {median_run['seconds']:.2f} 秒、"
          f"セル合計 {total:.2f} 秒（{len(cells)} セル）。遅いセル:")
    for d, i, first in sorted(cells, reverse=True)[:top]:
        print(f"      セル {i:>3}: {d:6.2f} 秒  {first}")


def per_notebook(runs: list[dict]) -> None:
    by_nb: dict[str, list[dict]] = {}
    for r in runs:
        if r["status"] == "ok":
            by_nb.setdefault(r["notebook"], []).append(r)
    for nb, rs in sorted(by_nb.items()):
        m = phase_medians(rs)
        print(f"      {nb}: {m['run']:.2f} 秒 = 起動等 {m['kernel_start_and_overhead']:.2f} + import {m['imports_first_cell']:.2f}"
              f" + 計算 {m['computation_other_cells']:.2f} + HTML {m['html_export']:.2f}")


def report(label: str, out: Path, wall: float, status: int, profile: bool = False) -> dict:
    manifest = json.loads((out / "bench" / "manifest.json").read_text(encoding="utf-8"))
    runs = list(manifest["runs"].values())
    ok = sum(1 for r in runs if r["status"] == "ok")
    muni_runs = [r for r in runs if r.get("level") != "pref"]  # the target is per municipal run
    med = phase_medians(muni_runs)
    prep = manifest.get("prepare", {})
    last = manifest["batches"][-1]
    print(f"[{label}] 終了コード {status}, 実行 {len(runs)} 本（成功 {ok}）, 全体 {wall:.1f} 秒, "
          f"ノートブック実行 {last.get('wall_seconds', float('nan')):.1f} 秒, 共有集計 {prep.get('executions')} 回 "
          f"({prep.get('seconds', 0):.1f} 秒)")
    print(f"    市町村の1本あたり中央値（{len(muni_runs)} 本）{med['run']:.2f} 秒 = カーネル起動等 {med['kernel_start_and_overhead']:.2f} + "
          f"最初のセル(import) {med['imports_first_cell']:.2f} + 計算 {med['computation_other_cells']:.2f} + "
          f"HTML 出力 {med['html_export']:.2f}")
    if last.get("wall_seconds"):  # includes what a run's own timer cannot see (worker start, waiting)
        print(f"    ノートブック実行の壁時計 ÷ 本数 = {last['wall_seconds'] / max(len(runs), 1):.2f} 秒/本")
    for r in sorted((r for r in runs if r.get("level") == "pref" and r.get("seconds") is not None),
                    key=lambda r: r["notebook"]):  # the target: a prefecture notebook ≤ 15 s
        print(f"    県全体 {r['notebook']}: {r['seconds']:.2f} 秒")
    warm = sum(1 for r in runs if (r.get("timing") or {}).get("warm") == 1.0)
    print(f"    事前起動のカーネルを使った実行 {warm} / {len(runs)} 本")
    if profile:
        per_notebook(runs)
        cell_profile(out, runs)
    return {"wall": wall, "notebook_wall": last.get("wall_seconds"), "median": med["run"],
            "prepare_executions": prep.get("executions"), "runs": len(runs), "ok": ok}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO / "data" / "demo"))
    ap.add_argument("--munis", type=int, default=None, help="先頭 N 市町村だけ（既定: 全19市町）")
    ap.add_argument("--all-notebooks", action="store_true", help="県全体のノートブックも含める")
    ap.add_argument("--jobs", type=int, default=None, help="比較する並列数（既定: CPUコア数）")
    ap.add_argument("--out", default=None, help="出力先（既定: 一時フォルダ）")
    ap.add_argument("--notebook-dir", default=None, help="ノートブックのフォルダ（既定: notebooks/）")
    ap.add_argument("--serial-only", action="store_true", help="--jobs 1 の一括実行だけ（並列の比較をしない）")
    ap.add_argument("--profile", action="store_true", help="ノートブックごとの内訳と、中央値の実行の遅いセル")
    args = ap.parse_args(argv)

    data_dir = Path(args.data).resolve()
    ensure_demo_data(data_dir)
    root = Path(args.out).resolve() if args.out else Path(tempfile.mkdtemp(prefix="hsutils_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    run_yaml = write_run_yaml(root, data_dir, args.munis, args.all_notebooks,
                              Path(args.notebook_dir).resolve() if args.notebook_dir else None)
    default_jobs = args.jobs or os.cpu_count() or 1
    print(f"CPU コア数 {os.cpu_count()}, 出力 {root}")

    serial = report("--jobs 1", root / "jobs1",
                    *run_batch_cli(run_yaml, root / "jobs1", 1), profile=args.profile)
    if args.serial_only:
        print(f"1本あたり中央値: {serial['median']:.2f} 秒（--jobs 1）; 目標 4 秒以下")
        return 0 if serial["ok"] == serial["runs"] and serial["prepare_executions"] == 1 else 1
    parallel = report(f"--jobs {default_jobs}（既定）", root / "jobsN",
                      *run_batch_cli(run_yaml, root / "jobsN", args.jobs))
    speedup = serial["wall"] / parallel["wall"]
    nb_speedup = (serial["notebook_wall"] or float("nan")) / (parallel["notebook_wall"] or float("nan"))
    print(f"速度向上: 全体 {speedup:.2f} 倍（ノートブック実行部分 {nb_speedup:.2f} 倍）; 目標 1.8 倍以上")
    print(f"1本あたり中央値: {serial['median']:.2f} 秒（--jobs 1）, {parallel['median']:.2f} 秒（並列）; 目標 4 秒以下")
    once = serial["prepare_executions"] == 1 and parallel["prepare_executions"] == 1
    print(f"共有の重い集計: 各バッチで {serial['prepare_executions']} 回 / {parallel['prepare_executions']} 回"
          f"（1回ずつ: {'はい' if once else 'いいえ'}）")
    return 0 if once and serial["ok"] == serial["runs"] and parallel["ok"] == parallel["runs"] else 1


if __name__ == "__main__":
    sys.exit(main())

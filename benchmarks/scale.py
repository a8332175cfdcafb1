"""Scale benchmark of the partitioned pipeline (issue 17; printed figures, not a timed test).

    nice -n 10 .venv/bin/python benchmarks/scale.py --scales 1 4 40 --root /tmp/scalebench

For each scale the demo is generated block by block (`synth.write_demo_streamed`, one Parquet file per
table; not timed, but its wall time and peak memory are printed: they must not grow with the scale).
Then, each in a fresh child process watched by a sampler of the whole process tree (the Dask workers
included):

* `hsutils prepare` (import + shared pass): wall and CPU seconds, peak RSS of the tree (sum over the
  processes at one moment) and of its largest process, the per-stage figures of meta.json when it has
  `stages`, and the per-task costs of the shared pass;
* notebook 04's data cell (`notebook.start` + extraction) for a small town (川北町 17324) and a large
  city (金沢市 17201): wall and CPU seconds, peak RSS.

A child whose tree passes `--max-rss-gb` is stopped and reported as such (the machine has 24 GB, shared).
`--identity-scale` runs the shared pass with `--workers 1` and `--workers 2` (a LocalCluster of 2 processes)
and compares the strata and person_year tables. Finally the whole country is projected from the measured
per-task costs: 1,741 municipalities, ≈ 36 million insured, 5 fiscal years ≈ 180 million person-years,
on N workers of this machine's size.

The children import the `hsutils` that `PYTHONPATH` points to (another worktree, e.g. one bounding the
importer's memory); the first line printed names it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NATIONAL_PERSON_YEARS = 36_000_000 * 5
NATIONAL_MUNIS = 1_741
SMALL, LARGE = "17324", "17201"
SEED = 2024

_NB04 = r'''
import json, resource, sys, time
nb = json.load(open(sys.argv[1]))
code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
g = {}
exec(code[0], g)
g.update(muni_code=sys.argv[4], cache_dir=sys.argv[2], data_dir=sys.argv[3], out_dir=sys.argv[5])
t0 = time.perf_counter()
exec(code[1].replace("%matplotlib inline", ""), g)
print(json.dumps({"seconds": round(time.perf_counter() - t0, 2), "rows": int(len(g["rows"]))}))
'''

_GENERATE = r'''
import sys, time
from hsutils.demo import synth
print(synth.write_demo_streamed(sys.argv[1], scale=float(sys.argv[2]), seed=int(sys.argv[3]), fmt=sys.argv[4]))
'''


class MemoryLimit(RuntimeError):
    pass


def _tree_rss(proc, cpu: dict[int, float]) -> tuple[int, int]:
    """(sum, largest) RSS in bytes of a process and its descendants at this moment; records each
    process's CPU seconds so far in `cpu` (a Dask worker that is killed, not reaped, is counted too)."""
    import psutil

    total = largest = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0, 0
    for p in procs:
        try:
            rss = p.memory_info().rss
            t = p.cpu_times()
        except psutil.Error:
            continue
        cpu[p.pid] = t.user + t.system
        total += rss
        largest = max(largest, rss)
    return total, largest


def run_child(cmd: list[str], max_rss_gb: float, env: dict | None = None, timeout: float | None = None) -> dict:
    """Run `cmd`, sampling the RSS of its process tree every 0.1 s; wall and CPU seconds (user + system of
    the child and its reaped descendants), peak RSS (tree sum and largest process, MB) and stdout. A tree
    above `max_rss_gb`, or still running after `timeout` seconds, is killed (MemoryLimit, with the figures
    so far and the last progress output)."""
    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # not in this worktree: `python -c` / `-m` put the working directory first on sys.path, which would
    # hide the hsutils of PYTHONPATH
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd="/")
    ps = psutil.Process(proc.pid)
    peak_sum = peak_one = 0
    import threading

    out_parts, err_parts = [], []
    def read(stream, parts):
        for chunk in iter(lambda: stream.read(4096), ""):
            parts.append(chunk)

    readers = [threading.Thread(target=read, args=(s, a), daemon=True)
               for s, a in ((proc.stdout, out_parts), (proc.stderr, err_parts))]
    for r in readers:
        r.start()
    killed = False
    cpu: dict[int, float] = {}
    while proc.poll() is None:
        total, largest = _tree_rss(ps, cpu)
        peak_sum, peak_one = max(peak_sum, total), max(peak_one, largest)
        over_time = timeout is not None and time.perf_counter() - t0 > timeout
        if total > max_rss_gb * 1024 ** 3 or over_time:
            for p in [ps] + ps.children(recursive=True):
                try:
                    p.kill()
                except psutil.Error:
                    pass
            killed = True
            proc.wait()
            break
        time.sleep(0.1)
    for r in readers:
        r.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = {"seconds": round(time.perf_counter() - t0, 1),
           "cpu_seconds": round(max((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                                    sum(cpu.values())), 1),
           "peak_rss_mb": round(peak_sum / 1024 ** 2), "peak_rss_mb_largest_process": round(peak_one / 1024 ** 2)}
    if killed:
        why = f"{timeout:g} 秒で打ち切り" if over_time else f"{max_rss_gb:g} GB を超えたため停止"
        progress = "".join(err_parts)[-400:].replace("\r", " | ")
        raise MemoryLimit(f"{why}: {json.dumps(res)}; 最後の進捗: {progress}")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} … failed ({proc.returncode}):\n{''.join(err_parts)[-3000:]}")
    res["stdout"] = "".join(out_parts)
    return res


def generate(data: Path, scale: float, fmt: str, max_rss_gb: float) -> dict | None:
    """The streamed demo (skipped when already there): wall seconds and peak RSS of the generator."""
    if (data / f"enrollment.{fmt}").exists():
        return None
    own = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # this worktree's generator
    r = run_child([sys.executable, "-c", _GENERATE, str(data), f"{scale:g}", str(SEED), fmt], max_rss_gb, env=own)
    return {k: r[k] for k in ("seconds", "cpu_seconds", "peak_rss_mb")}


def prepare(data: Path, cache: Path, workers: int | None, max_rss_gb: float, timeout: float | None = None) -> dict:
    if cache.exists():  # a fresh import and shared pass (the cache would be reused)
        import shutil

        shutil.rmtree(cache)
    cmd = [sys.executable, "-m", "hsutils.running.cli", "prepare", str(data), "--cache", str(cache)]
    if workers:
        cmd += ["--workers", str(workers)]
    r = run_child(cmd, max_rss_gb, timeout=timeout)
    meta = json.loads((cache / "meta.json").read_text(encoding="utf-8"))
    parts = meta.get("partitions", [])
    out = {"prepare_seconds": r["seconds"], "prepare_cpu_seconds": r["cpu_seconds"],
           "prepare_peak_rss_mb": r["peak_rss_mb"], "prepare_peak_rss_mb_largest_process": r["peak_rss_mb_largest_process"],
           "person_years": meta["person_year_rows"], "rows": meta.get("rows"), "engine": meta.get("engine"),
           "tasks": len(parts), "task_seconds_sum": round(sum(p["seconds"] for p in parts), 1),
           "task_seconds_max": max((p["seconds"] for p in parts), default=None),
           "task_peak_rss_mb_max": max((p["peak_rss_mb"] for p in parts), default=None)}
    if "stages" in meta:
        out["stages"] = meta["stages"]
    return out


def nb04(data: Path, cache: Path, root: Path, muni: str, max_rss_gb: float) -> dict:
    nb = ROOT / "notebooks" / "04_nephropathy.ipynb"
    r = run_child([sys.executable, "-c", _NB04, str(nb), str(cache), str(data), muni, str(root / "nb_out" / muni)],
                  max_rss_gb)
    inner = json.loads(r["stdout"].strip().splitlines()[-1])
    return {"cell_seconds": inner["seconds"], "process_seconds": r["seconds"], "cpu_seconds": r["cpu_seconds"],
            "peak_rss_mb": r["peak_rss_mb"], "rows": inner["rows"]}


def run_scale(scale: float, root: Path, workers: int | None, fmt: str, max_rss_gb: float,
              timeout: float | None = None) -> dict:
    base = root / f"scale{scale:g}"
    data, cache = base / "data", base / "cache"
    result: dict = {"scale": scale}
    gen = generate(data, scale, fmt, max_rss_gb)
    if gen:
        result["generate"] = gen
    result["input_mb"] = round(sum(p.stat().st_size for p in data.iterdir() if p.is_file()) / 1024 ** 2)
    try:
        result.update(prepare(data, cache, workers, max_rss_gb, timeout))
    except MemoryLimit as e:
        result["prepare"] = str(e)
        return result
    for label, muni in (("small", SMALL), ("large", LARGE)):
        try:
            result[f"nb04_{label}"] = nb04(data, cache, root, muni, max_rss_gb)
        except MemoryLimit as e:
            result[f"nb04_{label}"] = str(e)
    return result


_PREPARE_TASKS = r'''
import sys
from pathlib import Path
from hsutils.analysis import pipeline
workers = int(sys.argv[3]) or None
pipeline.prepare_cache(Path(sys.argv[1]), Path(sys.argv[2]), workers=workers, task_rows=int(sys.argv[4]))
'''


def identity(root: Path, scale: float, fmt: str, max_rss_gb: float, task_rows: int = 20_000) -> dict:
    """Strata and person_year of LocalClusters of 1 and 2 processes (tasks of at most `task_rows` enrollment
    rows, so that a small demo has several) against the single-process path (one task, in this process)."""
    import pandas as pd

    data = root / f"scale{scale:g}" / "data"
    generate(data, scale, fmt, max_rss_gb)
    runs = {"in_process": (0, 10 ** 12), "cluster_1": (1, task_rows), "cluster_2": (2, task_rows)}
    out: dict = {"scale": scale, "task_rows": task_rows}
    frames = {}
    for label, (workers, rows) in runs.items():
        cache = root / f"scale{scale:g}" / f"cache_{label}"
        if cache.exists():
            import shutil

            shutil.rmtree(cache)
        r = run_child([sys.executable, "-c", _PREPARE_TASKS, str(data), str(cache), str(workers), str(rows)],
                      max_rss_gb)
        meta = json.loads((cache / "meta.json").read_text(encoding="utf-8"))
        out[label] = {"engine": meta["engine"], "tasks": len(meta.get("partitions", [])), "seconds": r["seconds"],
                      "cpu_seconds": r["cpu_seconds"], "peak_rss_mb": r["peak_rss_mb"]}
        frames[label] = (pd.read_parquet(cache / "strata.parquet"),
                         pd.read_parquet(cache / "person_year").sort_values(["person_id", "fy"])
                         .reset_index(drop=True))
    s0, p0 = frames["in_process"]
    out["strata_rows"], out["person_year_rows"] = len(s0), len(p0)
    for label in ("cluster_1", "cluster_2"):
        s, p = frames[label]
        out[f"{label}_strata_identical"] = bool(s0.equals(s))
        out[f"{label}_person_year_identical"] = bool(p0.equals(p))
    return out


def projection(results: list[dict], workers: list[int]) -> list[str]:
    """National wall time on N single-core workers from the largest completed scale: the CPU seconds of
    the whole `prepare` (import + shared pass) per person-year (independent of the machine's load), and,
    as an upper bound, the shared-pass tasks' wall seconds per person-year as measured here."""
    done = [r for r in results if "task_seconds_sum" in r]
    if not done:
        return ["全国の見積もり: 完了した規模がありません"]
    r = max(done, key=lambda x: x["person_years"])
    py = max(r["person_years"], 1)
    per_cpu = r["prepare_cpu_seconds"] / py
    per_task = r["task_seconds_sum"] / py
    lines = [f"全国（{NATIONAL_MUNIS:,} 市町村、{NATIONAL_PERSON_YEARS:,} 人年）の見積もり: scale {r['scale']:g} "
             f"（{r['person_years']:,} 人年）の prepare（取り込み＋共通の集計）CPU {per_cpu * 1e6:.0f} µs/人年、"
             f"共通の集計のタスクの経過時間 {per_task * 1e6:.0f} µs/人年（この負荷のPCで、上限の目安）"]
    lines += [f"  {n} ワーカー（1コアずつ）: ≈ {per_cpu * NATIONAL_PERSON_YEARS / n / 3600:.2f} 時間"
              f"（上限 {max(per_cpu, per_task) * NATIONAL_PERSON_YEARS / n / 3600:.2f} 時間）" for n in workers]
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", type=float, nargs="*", default=[1, 4, 40])
    p.add_argument("--root", default="/tmp/scalebench")
    p.add_argument("--workers", type=int, default=None, help="prepare --workers（既定: このPCに合わせた LocalCluster）")
    p.add_argument("--format", default="parquet", choices=["parquet", "csv"])
    p.add_argument("--max-rss-gb", type=float, default=16.0)
    p.add_argument("--timeout", type=float, default=None, help="prepare をこの秒数で打ち切る（共有のPCで）")
    p.add_argument("--identity-scale", type=float, default=None,
                   help="この規模で --workers 1 と 2 の共通の集計の一致を確かめる")
    p.add_argument("--national-workers", type=int, nargs="+", default=[2, 16, 64, 256])
    args = p.parse_args(argv)
    root = Path(args.root)
    where = subprocess.run([sys.executable, "-c", "import hsutils; print(hsutils.__file__)"], check=True,
                           capture_output=True, text=True, cwd="/").stdout.strip()
    print(json.dumps({"hsutils": where, "PYTHONPATH": os.environ.get("PYTHONPATH"), "format": args.format}), flush=True)
    results = []
    for s in args.scales:
        r = run_scale(s, root, args.workers, args.format, args.max_rss_gb, args.timeout)
        r["workers"] = args.workers or "auto"
        results.append(r)
        print(json.dumps(r, ensure_ascii=False), flush=True)
    if args.identity_scale:
        print(json.dumps(identity(root, args.identity_scale, args.format, args.max_rss_gb), ensure_ascii=False),
              flush=True)
    for line in projection(results, args.national_workers):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

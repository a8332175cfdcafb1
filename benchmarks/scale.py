"""Scale benchmark of the partitioned pipeline (issue 17; printed figures, not a timed test).

    .venv/bin/python benchmarks/scale.py --scales 1 4 40 --workers 2 --root /tmp/hsutils-scale

For each scale: the demo is generated (not timed), then `hsutils prepare` runs in a child process
(import + shared pass; wall time, peak RSS of the main process and of the worker tasks from
meta.json), then notebook 04's data cell (`notebook.start` + extraction) runs in a fresh process
for a small town (川北町 17324) and a large city (金沢市 17201): wall time and peak RSS.
Finally the whole country is projected from the measured per-task costs: 1,741 municipalities,
≈ 36 million insured, 5 fiscal years ≈ 180 million person-years, on N workers of this size.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NATIONAL_PERSON_YEARS = 36_000_000 * 5
SMALL, LARGE = "17324", "17201"

_NB04 = r'''
import json, resource, sys, time
nb = json.load(open(sys.argv[1]))
code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
g = {}
exec(code[0], g)
g.update(muni_code=sys.argv[4], cache_dir=sys.argv[2], data_dir=sys.argv[3], out_dir=sys.argv[5])
t0 = time.perf_counter()
exec(code[1].replace("%matplotlib inline", ""), g)
print(json.dumps({"seconds": round(time.perf_counter() - t0, 2),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "rows": int(len(g["rows"]))}))
'''


def _child(cmd: list[str]) -> tuple[float, float, str]:
    """Run a child process; wall seconds, its peak RSS (MB, the largest child so far) and stdout."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return time.perf_counter() - t0, peak, out.stdout


def run_scale(scale: float, root: Path, workers: int | None) -> dict:
    from hsutils.demo import synth

    data, cache = root / f"scale{scale:g}" / "data", root / f"scale{scale:g}" / "cache"
    if not (data / "enrollment.csv").exists():
        synth.write_demo(data, scale=scale, seed=2024)
    cmd = [sys.executable, "-m", "hsutils.running.cli", "prepare", str(data), "--cache", str(cache)]
    if workers:
        cmd += ["--workers", str(workers)]
    seconds, peak, _ = _child(cmd)
    meta = json.loads((cache / "meta.json").read_text(encoding="utf-8"))
    parts = meta.get("partitions", [])
    result = {"scale": scale, "person_years": meta["person_year_rows"], "prepare_seconds": round(seconds, 1),
              "prepare_peak_rss_mb_main": round(peak), "tasks": len(parts),
              "task_seconds_sum": round(sum(p["seconds"] for p in parts), 1),
              "task_peak_rss_mb_max": max((p["peak_rss_mb"] for p in parts), default=None)}
    nb = ROOT / "notebooks" / "04_nephropathy.ipynb"
    for label, muni in (("small", SMALL), ("large", LARGE)):
        out = subprocess.run([sys.executable, "-c", _NB04, str(nb), str(cache), str(data), muni,
                              str(root / "nb_out" / muni)], check=True, capture_output=True, text=True)
        result[f"nb04_{label}"] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def projection(results: list[dict], workers: list[int]) -> list[str]:
    """National wall time from the largest measured scale's task cost per person-year."""
    r = max(results, key=lambda x: x["person_years"])
    per_row = r["task_seconds_sum"] / max(r["person_years"], 1)
    total = per_row * NATIONAL_PERSON_YEARS
    return [f"全国（{NATIONAL_PERSON_YEARS:,} 人年、scale {r['scale']:g} の {per_row * 1e6:.1f} µs/人年から）: "
            f"{n} ワーカー ≈ {total / n / 3600:.1f} 時間" for n in workers]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", type=float, nargs="+", default=[1, 4, 40])
    p.add_argument("--root", default="/tmp/hsutils-scale")
    p.add_argument("--workers", type=int, default=None)
    args = p.parse_args(argv)
    root = Path(args.root)
    results = []
    for s in args.scales:
        r = run_scale(s, root, args.workers)
        results.append(r)
        print(json.dumps(r, ensure_ascii=False), flush=True)
    for line in projection(results, [2, 16, 64, 256]):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

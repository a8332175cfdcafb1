"""Benchmark of the 特定健診 XML reader (issue 15): the scale-1 demo's 健診 as XML archives.

Writes the demo (`hsutils demo --kenshin-format xml`) into a temporary folder unless --data is
given, then converts the archives with `hsutils.inputs.tokutei_xml.read_archives` and prints

* documents, total wall time, documents/s;
* documents per second per core = documents / CPU seconds of the parent and the workers;
* peak resident memory of the parent and of the largest worker (ru_maxrss).

The import runs as the pipeline runs it (`keep_observations=False`: streaming, no audit table).
With --repeat N it runs N times and prints the best documents per CPU-second (the machine is
shared: compare runs alternated with another version of the reader, best of 3).

    .venv/bin/python benchmarks/tokutei_xml.py              # scale 1 (~90,000 documents)
    .venv/bin/python benchmarks/tokutei_xml.py --scale 0.1  # quick check
    .venv/bin/python benchmarks/tokutei_xml.py --workers 1  # one process
    .venv/bin/python benchmarks/tokutei_xml.py --data <demo> --workers 1 --repeat 3

Targets (issue 15): ≥ 3,000 documents/s per core; 100,000 documents ≤ 40 s on 2 cores; ≤ 2 GB.
Printed figures, not a timed test (docs/design.md §8).
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hsutils.inputs import io, tokutei_xml
from hsutils.demo import synth  # noqa: E402


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--data", default=None,
                    help="既存のデータフォルダ（XMLデモ）またはそのアーカイブのフォルダ（kenshin_xml/）を使う（読むだけ）")
    ap.add_argument("--workers", type=int, default=None, help="ワーカー数（既定: CPUコア数）")
    ap.add_argument("--repeat", type=int, default=1, help="繰り返す回数（最良の 文書/CPU秒 を表示）")
    args = ap.parse_args()

    tmp = None
    if args.data:
        data = Path(args.data)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="hs_xml_bench_")
        data = Path(tmp.name)
        t0 = time.perf_counter()
        synth.write_demo(data, scale=args.scale, seed=2024, kenshin_format="xml")
        print(f"XMLデモ作成 (scale={args.scale:g}): {time.perf_counter() - t0:.1f} 秒")
    # --data may name the data folder or its archive folder (e.g. data/demo/kenshin_xml); only read
    folder = data if (data / "enrollment.csv").exists() else data.parent
    enrollment = io.read_table(folder / "enrollment.csv", "enrollment").data
    best = None
    for _ in range(max(1, args.repeat)):
        cpu0, t0 = _cpu(), time.perf_counter()
        imp = tokutei_xml.read_archives(data, enrollment=enrollment, data_folder=folder, workers=args.workers,
                                        keep_observations=False)
        wall = time.perf_counter() - t0
        cpu = _cpu() - cpu0
        n = imp.result.n_read
        print(f"  実行: {n / cpu:,.0f} 文書/CPU秒（CPU {cpu:.2f} 秒、経過 {wall:.2f} 秒）")
        if best is None or cpu < best[0]:
            best = (cpu, wall)
    cpu, wall = best
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    n_g = imp.guidance_summary.get("documents", 0)
    print(f"アーカイブ {len(imp.sources)} 件、特定健診文書 {n:,} 件（ほか特定保健指導 {n_g:,} 件）、"
          f"検査値 {imp.n_observations:,} 件、"
          f"採用 {imp.result.n_kept:,} / 除外 {imp.result.n_dropped:,}")
    print(f"合計時間 {wall:.1f} 秒、{n / wall:,.0f} 文書/秒（経過時間）")
    print(f"1コアあたり {n / cpu:,.0f} 文書/秒（CPU時間 {cpu:.1f} 秒、親＋ワーカー、{args.repeat} 回のうち最良）")
    print(f"ピークメモリ（RSS）: 親 {rss_self:,.0f} MB、最大のワーカー {rss_kids:,.0f} MB")
    print(f"100,000 文書の推定: {100_000 / n * wall:.1f} 秒（この並列数・この負荷で）")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

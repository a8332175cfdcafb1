"""Benchmark of the UKE reader (issue 16): printed figures, not a timed test.

    python benchmarks/uke.py                      # 1x, 2x, 4x of ~1 million lines
    python benchmarks/uke.py --lines 5000000 --sizes 1 2

Builds a demo UKE set once (hsutils.demo.synth_uke at a small scale, not timed) and concatenates its
IR…GO blocks into one file of about ``--lines`` × size lines (every block is self-contained, so
repeating blocks gives a valid file). Each size is read in a fresh subprocess:

    read_raw (streamed in CHUNK_BYTES blocks) → assemble (receipt checks, long tables)

and prints lines, receipts, CPU seconds (process time: the figure per core, independent of other
load on the machine), wall seconds, lines per CPU-second and the subprocess's peak RSS. The block
buffers are bounded by CHUNK_BYTES; the extracted tables grow with the number of receipts, so the
peak RSS per million lines is printed too.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _measure(path: str) -> dict:
    from hsutils.inputs import uke

    t0, w0 = time.process_time(), time.perf_counter()
    raw = uke.read_raw([path])
    t1 = time.process_time()
    tables = uke.assemble(raw)
    t2, w2 = time.process_time(), time.perf_counter()
    return {"lines": raw.lines_read, "receipts": tables.counts["receipts_read"], "cpu_read": t1 - t0,
            "cpu_assemble": t2 - t1, "wall": w2 - w0,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2}


def _build(folder: Path, target_lines: int) -> tuple[Path, int]:
    from hsutils.demo import synth, synth_uke

    tables = synth.generate_demo(scale=0.02, seed=11)
    synth_uke.write_uke(folder, tables, seed=11)
    blocks = b"".join(p.read_bytes().rstrip(b"\x1a") for p in sorted((folder / "uke").glob("*.UKE")))
    n = blocks.count(b"\n")
    base = folder / "base.UKE"
    reps = max(1, round(target_lines / n))
    with open(base, "wb") as fh:
        for _ in range(reps):
            fh.write(blocks)
    return base, n * reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000, help="lines of the 1x file")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(_measure(args.measure)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base, n = _build(tmp, args.lines)
        print(f"UKE reader benchmark: 1x = {n:,} lines ({base.stat().st_size / 1e6:.0f} MB)")
        print(f"{'size':>5} {'lines':>12} {'receipts':>10} {'cpu s':>7} {'wall s':>7} {'lines/cpu-s':>12} "
              f"{'peak RSS GB':>11} {'GB/M lines':>10}")
        for k in args.sizes:
            path = tmp / f"x{k}.UKE"
            with open(path, "wb") as fh:
                data = base.read_bytes()
                for _ in range(k):
                    fh.write(data)
            out = subprocess.run([sys.executable, __file__, "--measure", str(path)], check=True,
                                 capture_output=True, text=True).stdout
            m = json.loads(out.strip().splitlines()[-1])
            cpu = m["cpu_read"] + m["cpu_assemble"]
            print(f"{k:>4}x {m['lines']:>12,} {m['receipts']:>10,} {cpu:>7.2f} {m['wall']:>7.2f} "
                  f"{m['lines'] / cpu:>12,.0f} {m['peak_rss_gb']:>11.2f} "
                  f"{m['peak_rss_gb'] / (m['lines'] / 1e6):>10.3f}")
            path.unlink()


if __name__ == "__main__":
    main()

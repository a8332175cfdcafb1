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

    python benchmarks/uke.py --convert --sizes 1 2 4 8

measures the whole import instead (`claims_import.convert_claims`: files read in segments and
stored by 診療年月, each month derived and written as Parquet; docs/claims_rules.md §7.1), each
size in a fresh process, on a data folder holding ONE file of size × the demo's UKE set: copy c
of the set has its 診療年月 moved 6c years later (the same people over a longer history), so the
file and the number of months grow with the size while a month stays the same. It prints the peak
RSS of the conversion and its straight-line projection to 50 million lines (issue 16: ≤ 2 GB).

    python benchmarks/uke.py --convert --people --sizes 16 32 64

measures what does grow: the size of one month. The folder holds the demo's files of its first
month only, size × over, each copy with its own people (HO 番号 prefixed by the copy number).
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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


def _measure_convert(folder: str) -> dict:
    from hsutils.inputs import claims_import, uke

    folder = Path(folder)
    t0, w0 = time.process_time(), time.perf_counter()
    store = claims_import.convert_claims(folder, uke.find_uke_files(folder), folder / "derived")
    t1, w1 = time.process_time(), time.perf_counter()
    return {"lines": store.counts["lines_read"], "receipts": store.counts["receipts_read"], "cpu": t1 - t0,
            "wall": w1 - w0, "months": len(store.months),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2}


_RE_YM = re.compile(rb"^(RE,[^,]*,[^,]*,)(\d{4})", re.M)


_HO_BANGO = re.compile(rb"^(HO,[^,]*,[^,]*,)", re.M)


def _convert_folder(tmp: Path, k: int, people: bool = False) -> Path:
    """A data folder with one UKE file of k copies of the demo set, copy c 6c years later; or
    (``people``) k copies of the demo's first month, each copy with its own people (no 個人ID対応表:
    person key = 保険者番号-記号-番号-枝番)."""
    folder = tmp / f"conv{k}"
    shutil.copytree(tmp / "uke_masters", folder / "uke_masters")
    files = sorted((tmp / "uke").glob("*.UKE"))
    if people:
        first = min(p.stem.split("_")[1] for p in files)
        files = [p for p in files if p.stem.split("_")[1] == first]
    else:
        shutil.copy(tmp / "person_ids.csv", folder / "person_ids.csv")
    parts = [p.read_bytes().rstrip(b"\x1a") for p in files]
    with open(folder / "all.UKE", "wb") as fh:
        for c in range(k):
            for data in parts:
                if people:
                    fh.write(_HO_BANGO.sub(lambda m: m.group(1) + str(c + 1).encode() + b"0", data))
                else:
                    fh.write(_RE_YM.sub(lambda m: m.group(1) + str(int(m.group(2)) + 6 * c).encode(), data)
                             if c else data)
    return folder


def _convert_main(tmp: Path, sizes: list, people: bool = False) -> None:
    print("UKE import benchmark (convert_claims: segments → months → Parquet), one file per size"
          + (", one month, size × its people" if people else ", size × the months"))
    print(f"{'size':>5} {'lines':>12} {'receipts':>10} {'months':>6} {'cpu s':>7} {'wall s':>7} "
          f"{'lines/cpu-s':>12} {'peak RSS GB':>11}")
    rows = []
    for k in sizes:
        folder = _convert_folder(tmp, k, people)
        out = subprocess.run([sys.executable, __file__, "--measure-convert", str(folder)], check=True,
                             capture_output=True, text=True).stdout
        m = json.loads(out.strip().splitlines()[-1])
        rows.append(m)
        print(f"{k:>4}x {m['lines']:>12,} {m['receipts']:>10,} {m['months']:>6} {m['cpu']:>7.2f} {m['wall']:>7.2f} "
              f"{m['lines'] / m['cpu']:>12,.0f} {m['peak_rss_gb']:>11.2f}")
        shutil.rmtree(folder)
    if len(rows) > 1:
        x = np.array([r["lines"] for r in rows], float) / 1e6
        y = np.array([r["peak_rss_gb"] for r in rows], float)
        slope, icept = np.polyfit(x, y, 1)
        print(f"peak RSS: {y.min():.2f}–{y.max():.2f} GB (spread {(y.max() - y.min()) / y.min():.0%} of the "
              f"smallest); straight line {icept:.2f} GB + {slope * 1000:.1f} MB per million lines → "
              + (f"{icept + slope * 50 / 12:.2f} GB for one month of {50 / 12:.1f} million lines "
                 "(50 million lines a year)" if people else f"{icept + slope * 50:.2f} GB at 50 million lines"))


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
    ap.add_argument("--convert", action="store_true", help="measure the whole import (peak memory)")
    ap.add_argument("--people", action="store_true", help="with --convert: grow one month's people")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    ap.add_argument("--measure-convert", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(_measure(args.measure)))
        return
    if args.measure_convert:
        print(json.dumps(_measure_convert(args.measure_convert)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.convert:
            from hsutils.demo import synth, synth_uke

            synth_uke.write_uke(tmp, synth.generate_demo(scale=0.02, seed=11), seed=11)
            _convert_main(tmp, args.sizes, args.people)
            return
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

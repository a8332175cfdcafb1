"""Numpy work on a large frame shared among threads, one per core, over blocks of rows.

numpy's arithmetic, comparisons, `log`/`exp`, `flatnonzero`, `take` and `bincount` release the GIL on
large arrays, so threads use every core without copying the rows to other processes (issue 18,
docs/design.md §8); so do Arrow's kernels. Used by `analysis.aggregate` (strata codes), `rules.clinical`
(the eGFR formula), `core.schema.age_band` and `analysis.pipeline` (partitions' rows put in order; the next
municipality's partitions read ahead, `read_ahead`). Below a few million rows the work stays on the calling thread.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

#: Rows per block: one block's int32 codes (4 MB) stay in the CPU cache across the passes over it.
BLOCK_ROWS = 1 << 20
#: From this many rows the blocks are shared among threads.
PARALLEL_MIN_ROWS = 2 * BLOCK_ROWS


def cores() -> int:
    """The cores this process may run on (the batch's affinity, a container's limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def row_runs(n: int, block_rows: int | None = None, min_rows: int | None = None) -> list[list[slice]]:
    """The rows 0…n−1 as blocks of `block_rows` (default `BLOCK_ROWS`), dealt into one contiguous run
    of blocks per thread (one per core, at most one per block; a single run below `min_rows` rows,
    default `PARALLEL_MIN_ROWS`, or on one core)."""
    block_rows = BLOCK_ROWS if block_rows is None else block_rows
    min_rows = PARALLEL_MIN_ROWS if min_rows is None else min_rows
    blocks = [slice(i, min(i + block_rows, n)) for i in range(0, n, block_rows)] or [slice(0, 0)]
    threads = min(cores(), len(blocks)) if n >= min_rows else 1
    return [blocks[len(blocks) * i // threads:len(blocks) * (i + 1) // threads] for i in range(threads)]


def per_thread(fn: Callable, runs: list) -> list:
    """`[fn(run) for run in runs]`, each run on a thread of its own when there are several."""
    if len(runs) == 1:
        return [fn(runs[0])]
    with ThreadPoolExecutor(len(runs), thread_name_prefix="hsutils-rows") as pool:
        return list(pool.map(fn, runs))


def for_row_blocks(n: int, fn: Callable[[slice], None], block_rows: int | None = None,
                   min_rows: int | None = None) -> None:
    """`fn(rows)` for every block `rows` (a slice) of the rows 0…n−1, on threads from `min_rows` rows.
    `fn` writes its block's results into arrays of the caller (blocks never overlap)."""
    per_thread(lambda run: [fn(rows) for rows in run], row_runs(n, block_rows, min_rows))


def read_ahead(fn: Callable, items) -> Iterator:
    """`fn(item)` for each of `items`, in order, each computed on a background thread while the
    caller works on the one before (one ahead: the caller's item and the next one are held, never
    more). For reading partitions: Arrow's reading and gathering release the GIL, so the next
    municipality is read on the second core while this one is counted. On one core, or for a
    single item, everything runs on the calling thread. An error of `fn` is raised when its item is
    asked for."""
    items = list(items)
    if len(items) < 2 or cores() < 2:
        for item in items:
            yield fn(item)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="hsutils-read-ahead") as pool:
        pending = pool.submit(fn, items[0])
        for item in items[1:]:
            done = pending.result()
            pending = pool.submit(fn, item)
            yield done
            del done  # the caller's item goes when it asks for the next one
        yield pending.result()

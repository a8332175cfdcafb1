"""Where the shared pass runs: `dask.distributed` (docs/design.md §8.3).

* default: a `LocalCluster` sized to this machine (one single-threaded worker process per core,
  no more workers than the memory allows for one task each): nothing to set up;
* `scheduler="tcp://host:8786"` (CLI `--scheduler`, YAML key `scheduler`, or the environment
  variable `HSUTILS_SCHEDULER`): an existing Dask cluster started with `dask scheduler` and
  `dask worker` (README「大きな県・クラスタで動かす」). The workers must see the cache folder at the
  same path (a shared file system) and have the same hsutils version installed.

The batch's notebook runs go to the same cluster when a scheduler is given
(`hsutils.running.dispatch`, docs/design.md §8.6).

A task that raises is reported by the caller with the others' results (`map_tasks` returns the
results in order and never stops at the first failure; the task functions return their error).
"""
from __future__ import annotations

import contextlib
import os
import time

#: Environment variable naming the scheduler address of an existing Dask cluster.
ENV_SCHEDULER = "HSUTILS_SCHEDULER"
#: Memory one worker needs for one task of the shared pass (hsutils.analysis.pipeline.TASK_ROWS rows).
TASK_MEMORY_BYTES = 2 * 1024 ** 3


def scheduler_address(scheduler: str | None = None) -> str | None:
    """The scheduler to use: the argument, else `HSUTILS_SCHEDULER`, else None (a local cluster)."""
    value = scheduler or os.environ.get(ENV_SCHEDULER) or None
    return str(value).strip() or None if value else None


def local_workers(task_memory: int = TASK_MEMORY_BYTES) -> int:
    """Workers of the default LocalCluster: one per core, at most one per `task_memory` of RAM."""
    cores = os.cpu_count() or 1
    try:
        import psutil

        memory = psutil.virtual_memory().total
    except ImportError:  # psutil comes with distributed; this is only a fallback
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, min(cores, int(memory // task_memory)))


@contextlib.contextmanager
def client(scheduler: str | None = None, workers: int | None = None):
    """A `distributed.Client`: on the cluster at `scheduler`, or on a LocalCluster of `workers`
    processes (default `local_workers()`) that is closed on exit."""
    from distributed import Client, LocalCluster

    address = scheduler_address(scheduler)
    if address:
        from hsutils.core.errors import ParameterError

        try:
            c = Client(address, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise ParameterError(f"Dask のスケジューラ「{address}」に接続できません（{e}）。"
                                 "`dask scheduler` が起動しているか、アドレスを確かめてください。") from None
        with c:
            yield c
        return
    n = int(workers or local_workers())
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit=0) as cluster, Client(cluster) as c:
        yield c


def map_tasks(c, func, items: list, *args, progress=None) -> list:
    """Run `func(item, *args)` for every item on the cluster; results in the order of `items`.
    `progress(done, total, eta_seconds, result)` is called as each task finishes."""
    from distributed import as_completed

    t0 = time.perf_counter()
    futures = [c.submit(func, item, *args, pure=False) for item in items]
    index = {f.key: i for i, f in enumerate(futures)}
    results = [None] * len(items)
    for done, f in enumerate(as_completed(futures), start=1):
        results[index[f.key]] = f.result()
        if progress is not None:
            elapsed = time.perf_counter() - t0
            progress(done, len(items), elapsed / done * (len(items) - done), results[index[f.key]])
    return results

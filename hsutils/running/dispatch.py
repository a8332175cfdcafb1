"""The batch's notebook runs on a Dask cluster's workers (docs/design.md §8.6, issue 17 item 3).

`hsutils batch --scheduler ADDRESS` (or the YAML key `scheduler:`, or `HSUTILS_SCHEDULER`) runs the
shared pass on that cluster (`hsutils.analysis.cluster`) and then hands every notebook run to it
(`run_on_cluster`): one Dask task per run. It is one more executor behind the batch's interface
(`batch._run_supervised` is the local one): the batch plans the runs, skips completed ones on
`--resume`, writes the manifest, index.html and the progress bar; this module only executes.

On a worker a task (`run_task_on_worker`) starts one child process (`python -m
hsutils.running.dispatch`) that runs `batch.execute_task` for the run, exactly as a local worker
does (the same temporary folder renamed into the shared output folder on success, the same log and
result record). The child keeps runs apart: `execute_task` sets environment variables and redirects
the process's output for its run, which must not mix with other runs on a worker with several threads.

Faults:
  - the child dies (out of memory, killed): that run fails with the reason, the others continue;
  - the Dask worker dies: the child dies with it (PR_SET_PDEATHSIG) and the scheduler runs the task
    again on another worker, at most `distributed.scheduler.allowed-failures` times (Dask's default 3),
    then the run fails with a Japanese reason;
  - no worker left on the cluster, or the scheduler unreachable, for `NO_WORKER_GRACE` seconds: the
    runs not finished fail with that reason (the batch ends instead of waiting forever);
  - Ctrl-C / SIGTERM / SIGHUP: the batch cancels its futures; each worker sees its task cancelled
    and stops the child (SIGTERM: the kernel is stopped and the temporary folder removed).

What the workers must share with the machine that starts the batch (README「大きな県・クラスタで動かす」):
the data, parameter, notebook and output folders at the same paths, and the same hsutils
(checked before any run: `check_workers`, also `hsutils workers`).
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

#: Seconds between checks of the cluster (a finished run, a worker count) and, on a worker, of a
#: cancelled task.
POLL_SECONDS = 0.5
#: Seconds without any worker (or without the scheduler) after which the unfinished runs fail.
NO_WORKER_GRACE = 120.0
#: Seconds a cancelled run's child gets to stop its kernel and clean up before it is killed.
STOP_GRACE = 15.0
#: Environment variables that go with each run to the worker: the run's settings
#: (`hsutils.core.settings`, e.g. HSUTILS_FIGURE_FORMATS), as a local worker inherits them.
FORWARDED_PREFIX = "HSUTILS_"


def forwarded_environment() -> dict[str, str]:
    """This process's HSUTILS_* variables (without the scheduler's address) for the runs."""
    from hsutils.analysis import cluster

    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIX) and k != cluster.ENV_SCHEDULER}


# ---------------------------------------------------------------------------------------------
# on the worker
# ---------------------------------------------------------------------------------------------

def _task_cancelled() -> bool:
    """True when the batch (or the scheduler) no longer wants the Dask task this thread runs."""
    try:
        from distributed import get_worker
        from distributed.worker import thread_state

        ts = get_worker().state.tasks.get(thread_state.key)
    except (ImportError, ValueError, AttributeError):
        return False  # not inside a Dask task (called directly): never cancelled
    return ts is None or ts.state in ("cancelled", "released", "forgotten")


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        import socket

        return socket.gethostname()


def run_task_on_worker(task, environ: dict[str, str]) -> dict[str, Any]:
    """One notebook run (`batch.RunTask`) in a child process of this worker; returns its result
    record (`batch.execute_task`'s, plus `worker`). Never raises for a failed run."""
    from hsutils.running import batch

    worker = _worker_name()
    with tempfile.TemporaryDirectory(prefix="hsutils-dispatch-") as folder:
        payload, result_path, stderr_path = (Path(folder) / n for n in ("task.pkl", "result.json", "stderr.txt"))
        payload.write_bytes(pickle.dumps(task))
        env = {**os.environ, **environ}
        with open(stderr_path, "wb") as stderr:
            child = subprocess.Popen([sys.executable, "-m", __name__, str(payload), str(result_path), str(os.getpid())],
                                     stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, env=env)
            stopped = False
            while True:
                try:
                    child.wait(timeout=POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if not stopped and _task_cancelled():
                    stopped = True
                    child.terminate()  # the child stops its kernel and removes its temporary folder
                    try:
                        child.wait(timeout=STOP_GRACE)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        child.wait()
                    break
        if result_path.exists():
            result = json.loads(result_path.read_text(encoding="utf-8"))
        elif stopped:
            result = {"key": task.key, "status": "pending", "seconds": None, "finished": batch._now(),
                      "error": "一括実行の中断により止めました"}
        else:
            result = {"key": task.key, "status": "failed", "seconds": None, "finished": batch._now(),
                      "error": batch._death_message(child.returncode)}
            _append_to_log(Path(task.log_path), stderr_path, result["error"], worker)
    result["worker"] = worker
    return result


def _append_to_log(log_path: Path, stderr_path: Path, error: str, worker: str) -> None:
    """What the child printed before it died goes to the run's log (it never reached execute_task's log)."""
    try:
        text = stderr_path.read_text(encoding="utf-8", errors="replace")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"\n# ワーカー {worker}: {error}\n{text}")
    except OSError:
        pass  # the shared folder itself is unreachable: the manifest still says why


def _child_main(argv: list[str]) -> int:
    """`python -m hsutils.running.dispatch TASK.pkl RESULT.json WORKER_PID`: run one notebook."""
    from hsutils.core import files
    from hsutils.running import batch

    payload, result_path, worker_pid = Path(argv[0]), Path(argv[1]), int(argv[2])
    batch._worker_init()  # SIGTERM → stop the kernel and clean up; Ctrl-C is the batch's to handle
    batch._die_with_parent(worker_pid)  # a Dask worker that dies takes its runs with it
    task = pickle.loads(payload.read_bytes())
    batch._BUSY = True
    try:
        result = batch.execute_task(task, redirect_output=True)
    except batch._Terminated:
        return 143
    except BaseException as exc:  # noqa: BLE001 - e.g. the log itself cannot be written
        result = {"key": task.key, "status": "failed", "seconds": None, "finished": batch._now(),
                  "error": batch.first_error_line(exc, task.timeout_seconds)}
    finally:
        batch._BUSY = False
    files.atomic_write_text(result_path, json.dumps(result, ensure_ascii=False, default=str))
    return 0


# ---------------------------------------------------------------------------------------------
# checking the workers
# ---------------------------------------------------------------------------------------------

def worker_report(paths: list[str], kernel_name: str | None = None, writable: str | None = None) -> dict[str, Any]:
    """What a worker has (run on each worker by `Client.run`): hsutils version and sources, Python,
    the Japanese font, the Jupyter kernel, and whether it sees `paths` (and can write `writable`)."""
    import importlib.util
    import platform
    import socket

    import hsutils
    from hsutils.running import batch

    report: dict[str, Any] = {"host": socket.gethostname(), "version": hsutils.__version__,
                              "library": batch.library_fingerprint(), "python": platform.python_version(),
                              "font": importlib.util.find_spec("matplotlib_fontja") is not None,
                              "missing": [p for p in paths if not os.path.exists(p)], "kernel": True,
                              "writable": True}
    if kernel_name:
        try:
            from jupyter_client.kernelspec import KernelSpecManager

            report["kernel"] = kernel_name in KernelSpecManager().find_kernel_specs()
        except Exception:  # noqa: BLE001 - no jupyter_client: no kernel either
            report["kernel"] = False
    if writable:
        try:
            Path(writable).mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=writable, prefix=".hsutils-check-"):
                pass
        except OSError:
            report["writable"] = False
    return report


def check_workers(c, paths: list[str], kernel_name: str | None = None, writable: str | None = None,
                  reports: dict[str, dict] | None = None) -> list[str]:
    """Japanese problems of the cluster's workers for this batch ([] = ready): none connected,
    another hsutils (version or sources), no Japanese font, no kernel, a folder they cannot see."""
    import hsutils
    from hsutils.running import batch

    if reports is None:
        reports = c.run(worker_report, paths, kernel_name, writable)
    if not reports:
        return ["スケジューラにワーカーが1台も接続していません（各マシンで `dask worker <スケジューラのアドレス>` を起動してください）"]
    here = batch.library_fingerprint()
    problems = []
    for address, r in sorted(reports.items()):
        who = f"ワーカー {address}（{r['host']}）"
        if r["version"] != hsutils.__version__ or r["library"] != here:
            problems.append(f"{who}: hsutils が一括実行を始めたマシンと違います（ワーカー {r['version']}、"
                            f"こちら {hsutils.__version__}）。同じ版を入れてください")
        if not r["font"]:
            problems.append(f"{who}: 日本語フォント（matplotlib-fontja）がありません")
        if not r["kernel"]:
            problems.append(f"{who}: Jupyter カーネル「{kernel_name}」がありません")
        for path in r["missing"]:
            problems.append(f"{who}: {path} が見えません（共有フォルダを同じパスでマウントしてください）")
        if not r["writable"]:
            problems.append(f"{who}: 出力フォルダ {writable} に書き込めません")
    return problems


def describe_workers(reports: dict[str, dict]) -> str:
    """One Japanese line per worker (`hsutils workers`)."""
    lines = []
    for address, r in sorted(reports.items()):
        lines.append(f"{address}  {r['host']}  hsutils {r['version']}  Python {r['python']}  "
                     f"日本語フォント {'あり' if r['font'] else 'なし'}  "
                     f"見えないフォルダ {'、'.join(r['missing']) if r['missing'] else 'なし'}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# on the machine that starts the batch
# ---------------------------------------------------------------------------------------------

def _shared_paths(tasks) -> list[str]:
    """The folders and files every worker must see at the same path for these runs."""
    paths = {str(Path(t.notebook_path)) for t in tasks} | {str(Path(t.run_dir)) for t in tasks}
    for t in tasks:
        for name, value in t.parameters.items():
            if name == "out_dir" or not isinstance(value, str) or not value:
                continue
            if Path(value).is_absolute() and os.path.exists(value):
                paths.add(value)  # cache_dir, and the targets / checklist / support files of a run
    return sorted(paths)


def _failure(task, reason: str) -> dict[str, Any]:
    from hsutils.running import batch

    return {"key": task.key, "status": "failed", "seconds": None, "finished": batch._now(), "error": reason}


def _error_text(exc: BaseException, task) -> str:
    from hsutils.running import batch

    if type(exc).__name__ == "KilledWorker":
        return ("実行中のワーカーが終了しました（再試行しても同じでした。メモリ不足やワーカーの強制終了の可能性があります）")
    return f"クラスタでの実行に失敗しました（{batch.first_error_line(exc, task.timeout_seconds)}）"


def check_cluster(scheduler: str, tasks: list) -> None:
    """ParameterError (Japanese, every problem of every worker) unless the cluster at `scheduler` can
    run these runs (`check_workers`). The batch calls it before the shared pass."""
    from hsutils.analysis import cluster
    from hsutils.core.errors import ParameterError

    with cluster.client(scheduler) as c:
        problems = check_workers(c, _shared_paths(tasks), tasks[0].kernel_name, str(Path(tasks[0].run_dir) / ".tmp"))
    if problems:
        raise ParameterError(f"Dask クラスタ {scheduler} のワーカーでノートブックを実行できません:\n  "
                             + "\n  ".join(problems))


def _wait_for_staging_removed(tasks, timeout: float) -> None:
    """After cancelling: wait until the runs' workers have stopped them (each removes its staging
    folder `<run>/.tmp/<notebook>_<area>_*`), so that the batch's own clean-up cannot pull a folder
    from under a kernel that still runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(any((Path(t.run_dir) / ".tmp").glob(f"{t.notebook_stem}_{t.muni_code}_*")) for t in tasks):
            return
        time.sleep(POLL_SECONDS)


def run_on_cluster(tasks: list, scheduler: str, on_result: Callable[[Any, dict], None]) -> bool:
    """Run the batch's runs on the Dask cluster at `scheduler`, one task per run; `on_result(task,
    result)` as each finishes (the batch records it). Returns False when interrupted.
    The batch has checked the workers first (`check_cluster`).

    At most as many runs are submitted as the cluster has worker threads (checked again every few
    seconds, so workers that join are used): a worker holds only the run it executes, so a worker
    that dies takes no waiting run with it, and an interruption has only running runs to stop."""
    from distributed import as_completed

    from hsutils.analysis import cluster
    from hsutils.running import batch

    with cluster.client(scheduler) as c:
        capacity = max(1, sum(c.nthreads().values()))
        print(f"{len(tasks)} 本を Dask クラスタ {scheduler}（ワーカー {len(c.nthreads())} 台、同時に "
              f"{capacity} 本）で実行します。", file=sys.stderr)
        environ = forwarded_environment()
        batch_id = uuid.uuid4().hex[:8]
        queue = list(enumerate(tasks))
        running: dict[Any, Any] = {}  # future → task
        ac = as_completed([], with_results=False)
        bar = batch._progress_bar(len(tasks))

        def submit_more() -> None:
            while queue and len(running) < capacity:
                i, t = queue.pop(0)
                f = c.submit(run_task_on_worker, t, environ, key=f"hsutils-run-{batch_id}-{i}", pure=False)
                running[f] = t
                ac.add(f)

        def finish(task, result: dict[str, Any]) -> None:
            on_result(task, result)
            batch._progress_step(bar, task, result)

        try:
            submit_more()
            last_check, lonely_since = time.monotonic(), None
            while running:
                ready = ac.next_batch(block=False)
                for f in ready:
                    task = running.pop(f)
                    if f.status == "finished":
                        finish(task, f.result())
                    elif f.status == "error":
                        finish(task, _failure(task, _error_text(f.exception(), task)))
                    else:  # cancelled by the scheduler (it restarted, or lost this client)
                        finish(task, _failure(task, "クラスタ側で実行が取り消されました（スケジューラの再起動など）"))
                submit_more()
                if ready:
                    continue
                time.sleep(POLL_SECONDS)
                if time.monotonic() - last_check < 5:
                    continue
                last_check = time.monotonic()
                try:
                    threads = sum(c.nthreads().values())
                except Exception:  # noqa: BLE001 - the scheduler is unreachable: counts as no worker
                    threads = 0
                capacity = max(1, threads)
                submit_more()
                lonely_since = None if threads else (lonely_since or last_check)
                if lonely_since is not None and last_check - lonely_since > NO_WORKER_GRACE:
                    c.cancel(list(running))
                    reason = (f"クラスタにワーカーがいない状態が {NO_WORKER_GRACE:.0f} 秒続いたため実行できませんでした"
                              "（ワーカーを起動して --resume で続けてください）")
                    for task in [*running.values(), *(t for _, t in queue)]:
                        finish(task, _failure(task, reason))
                    return True
            return True
        except KeyboardInterrupt:
            # each worker sees its task cancelled and stops the run (kernel stopped, staging removed)
            c.cancel(list(running))
            _wait_for_staging_removed(list(running.values()), STOP_GRACE + 5)
            return False
        except BaseException:
            c.cancel(list(running))
            raise
        finally:
            bar.close()


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))

"""Papermill batch runner: every notebook for every municipality, in worker processes (docs/design.md §7–9).

`run_batch` (the `hsutils batch` command):
  1. validates the run parameters (`hsutils.running.params`);
  2. runs the shared heavy pass once (`pipeline.prepare_cache` into `<out>/<run>/cache`);
  3. plans one run per (prefecture-level notebook) and per (municipal notebook × municipality);
  4. executes each run in its own supervised worker process (spawn context, never threads), in a
     temporary folder renamed into `<out>/<run>/<muni_code>_<name>/<notebook>/` only on success;
     with a Dask scheduler (`--scheduler`, YAML `scheduler:`, HSUTILS_SCHEDULER) each run is one task
     on that cluster's workers instead (`hsutils.running.dispatch`, docs/design.md §8.6);
  5. keeps `manifest.json` (resume keys, timings, prepare count, cache checksums) and `index.html`
     (成功/失敗/未実行) up to date after every finished run, both written atomically.

The parent process is the only writer of the manifest and the index, so an interrupted batch
(Ctrl-C, SIGTERM, SIGHUP) leaves both consistent: runs whose result never reached the parent stay 未実行.

Fault handling (issue 26):
  - at most `jobs` worker processes, each running one run at a time with a pre-started kernel
    (docs/design.md §8.5): a worker that dies (kill -9, out of memory) fails only the run it was
    executing and is replaced;
  - workers die with the parent (Linux `PR_SET_PDEATHSIG` plus a parent-PID watchdog thread);
  - `<run>/.batch.lock` (PID, host, start time) keeps a second batch or `--resume` out of a live
    run folder; a lock whose process is gone (same host) is stale and taken over with a note;
  - the shared cache's file checksums are recorded when written and verified before reuse;
  - exit codes (`EXIT_*`): 0 all ok, 1 some runs failed, 2 parameter/data/output-folder error
    before running, 3 interrupted, 4 internal error (traceback only in `<run>/logs/batch.log`);
  - outputs follow the user's umask; `confidential/` folders are 0700 whatever the umask.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import errno
import hashlib
import html
import importlib
import inspect
import json
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid
from multiprocessing.connection import wait as _wait_ready
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import hsutils
from hsutils.running import params as hparams
from hsutils.running import warm
from hsutils.core import files, settings
from hsutils.core.errors import DataError, HsutilsError, ParameterError

# The shared cache holds person-level data (person_year etc.): it lives under confidential/ so that
# nobody hands it out with the committee reports (docs/design.md §6).
CACHE_SUBDIR = settings.CACHE_SUBDIR

MANIFEST_NAME = "manifest.json"
INDEX_NAME = "index.html"
MANIFEST_FORMAT = 1
STATUS_JA = {"ok": "成功", "failed": "失敗", "pending": "未実行"}
LOCK_NAME = ".batch.lock"
BATCH_LOG = Path("logs") / "batch.log"

# Exit codes of `hsutils batch` / `hsutils run` (README「夜間の一括実行で困ったとき」).
EXIT_OK = 0            # every run succeeded
EXIT_RUNS_FAILED = 1   # the batch finished, some runs failed (see index.html)
EXIT_INPUT_ERROR = 2   # parameter, data or output-folder problem found before running (or a live lock)
EXIT_INTERRUPTED = 3   # Ctrl-C, SIGTERM or SIGHUP: finished runs kept, the rest 未実行 (--resume)
EXIT_INTERNAL = 4      # unexpected error: the traceback is in the log named on the console
EXIT_MEANING_JA = {
    EXIT_OK: "すべて成功", EXIT_RUNS_FAILED: "一部の実行が失敗",
    EXIT_INPUT_ERROR: "実行前にパラメータ・データ・出力先の問題を検出", EXIT_INTERRUPTED: "中断",
    EXIT_INTERNAL: "内部エラー",
}


class BatchLockedError(HsutilsError):
    """Another live batch holds the run folder."""


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------

def _respect_umask(path: Path) -> None:
    """mkdtemp creates 0700; give the run folder the mode the user's umask allows."""
    os.chmod(path, 0o777 & ~files.current_umask())


def _make_private(path: Path) -> None:
    """confidential/ holds person-level data: owner only, whatever the umask (docs/design.md §6)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _privatise_confidential(root: Path) -> None:
    """Every `confidential/` folder a notebook wrote (it used plain mkdir, i.e. the umask) → 0700."""
    for d in root.rglob("confidential"):
        if d.is_dir():
            _make_private(d)


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def data_fingerprint(data_dir: Path) -> str:
    """Hash of every input file's name and content under data_dir (`files.folder_fingerprint`:
    hidden files and Excel lock files skipped). An unreadable file is a DataError naming it."""
    try:
        return files.folder_fingerprint(data_dir)
    except OSError as e:
        raise DataError(f"入力ファイル {e.filename or data_dir} を読めません（{_os_reason(e)}）。"
                        "ファイルの権限を確認するか、Excel などで開いていれば閉じてください。") from None


def _files_fingerprint(paths: list[Path]) -> dict[str, str]:
    """path → sha256 of parameter files a run reads (column map, targets, checklists)."""
    out = {}
    for p in paths:
        try:
            # a folder (e.g. notebook 09's support records) counts by the content of all its files
            out[str(p)] = files.folder_fingerprint(p) if p.is_dir() else files.sha256_file(p)
        except OSError as e:
            raise ParameterError(f"パラメータで指定されたファイル {p} を読めません（{_os_reason(e)}）。") from None
    return out


def _referenced_files(parameters: dict[str, Any]) -> list[Path]:
    """Files and folders named by a run's parameters (e.g. `targets: evaluation_targets.yaml`,
    `support_dir: support_records`), cache and output folders excluded."""
    found = []
    for name, value in sorted(parameters.items()):
        if name in ("cache_dir", "out_dir") or not isinstance(value, str) or not value:
            continue
        try:
            path = Path(value)
            if path.is_absolute() and (path.is_file() or path.is_dir()):
                found.append(path)
        except (OSError, ValueError):
            continue
    return found


def _os_reason(e: OSError) -> str:
    """Japanese reason for an OSError (permission denied, disk full, …)."""
    reasons = {errno.EACCES: "アクセス権がありません", errno.EPERM: "操作が許可されていません",
               errno.ENOSPC: "ディスクの空き容量が足りません", errno.EROFS: "読み取り専用の場所です",
               errno.ENOENT: "見つかりません", errno.EDQUOT: "ディスク容量の割り当て（クォータ）を超えました",
               errno.EIO: "入出力エラー"}
    return reasons.get(e.errno, f"OSのエラー {e.errno}: {e.strerror}")


def library_fingerprint() -> str:
    """Hash of the hsutils sources and package data: a library fix invalidates cached results."""
    return files.folder_fingerprint(settings.PACKAGE_DIR, ignore=("__pycache__",))


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _folder_bytes(path: Path) -> int:
    total = 0
    for p in Path(path).rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            continue
    return total


def space_needed(p: hparams.RunParams, n_runs: int) -> int:
    """Rough bytes a batch needs: the shared cache (≈ the input size) plus, per run, the size of an
    earlier report folder of this run (or 5 MB when there is none yet)."""
    reports = [d for d in p.run_dir.glob("*_*/*") if d.is_dir()] if p.run_dir.is_dir() else []
    per_run = (max(_folder_bytes(d) for d in reports[:20]) if reports else 5 * 2**20)
    return _folder_bytes(p.data_dir) + n_runs * per_run


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


def _safe_name(text: str) -> str:
    """A folder-safe version of a municipality name (Japanese kept, path separators removed)."""
    return "".join("_" if ch in '/\\:*?"<>|' else ch for ch in str(text)).strip() or "名称不明"


# ---------------------------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class RunTask:
    """One notebook × one area. Plain data only: it is pickled to a worker process."""
    key: str
    notebook_id: str
    notebook_stem: str
    notebook_title: str
    level: str
    notebook_path: str
    muni_code: str
    muni_name: str
    parameters: dict[str, Any]
    run_dir: str
    final_dir: str
    log_path: str
    timeout_seconds: int
    kernel_start_timeout: int
    kernel_name: str
    resume_key: str = ""

    @property
    def rel_dir(self) -> str:
        return Path(self.final_dir).relative_to(self.run_dir).as_posix()

    @property
    def report_rel(self) -> str:
        return f"{self.rel_dir}/{self.notebook_stem}.html"

    @property
    def log_rel(self) -> str:
        return Path(self.log_path).relative_to(self.run_dir).as_posix()


def plan_tasks(p: hparams.RunParams, cache_dir: Path) -> list[RunTask]:
    """Prefecture-level notebooks once (muni_code = the prefecture), municipal ones × municipalities,
    "both" notebooks for the prefecture and each municipality (each task has level pref or muni)."""
    run_dir = p.run_dir
    tasks: list[RunTask] = []
    for spec in p.notebooks:
        areas = (([(p.pref_code5, p.pref_name)] if spec.level in ("pref", "both") else [])
                 + (list(p.municipalities.items()) if spec.level in ("muni", "both") else []))
        for code, name in areas:
            level = spec.level if spec.level != "both" else ("pref" if code == p.pref_code5 else "muni")
            final_dir = run_dir / f"{code}_{_safe_name(name)}" / spec.stem
            parameters = p.notebook_parameters_for(spec, muni_code=code, muni_name=name,
                                                   cache_dir=str(cache_dir), out_dir=str(final_dir))
            tasks.append(RunTask(
                key=f"{spec.stem}/{code}", notebook_id=spec.id, notebook_stem=spec.stem,
                notebook_title=spec.title, level=level, notebook_path=str(p.notebook_path(spec)),
                muni_code=code, muni_name=name, parameters=parameters, run_dir=str(run_dir),
                final_dir=str(final_dir), log_path=str(run_dir / "logs" / f"{spec.stem}_{code}.log"),
                timeout_seconds=p.timeout_seconds, kernel_start_timeout=p.kernel_start_timeout,
                kernel_name=p.kernel_name))
    return tasks


def _resume_key(task: RunTask, data_hash: str, library_hash: str, column_map: Path | None = None) -> str:
    """Hash of everything a run depends on: input data, column map, the parameter files it reads
    (targets, checklists…), its parameters, the notebook's bytes, the library sources and version.
    Same key ⇒ same result."""
    blob = json.dumps({
        "data": data_hash, "library": library_hash, "version": hsutils.__version__,
        "notebook": files.sha256_file(Path(task.notebook_path)),
        "column_map": _files_fingerprint([column_map]) if column_map else {},
        "files": _files_fingerprint(_referenced_files(task.parameters)),
        "parameters": task.parameters, "kernel": task.kernel_name,
    }, sort_keys=True, ensure_ascii=False, default=str)
    return _sha256_bytes(blob.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# the worker (runs in a child process)
# ---------------------------------------------------------------------------------------------

class _Terminated(BaseException):
    """Raised in a worker when the parent asks it to stop (SIGTERM after Ctrl-C)."""


_BUSY = False  # True while a worker executes a run (its SIGTERM then cleans up before exiting)
_SLOT: "warm.WarmSlot | None" = None  # the worker's pre-started kernel (killed when the worker stops)


def _raise_terminated(signum, frame):  # pragma: no cover - runs in the worker
    if not _BUSY:
        if _SLOT is not None:
            _SLOT.kill()  # an idle worker's pre-started kernel must not outlive it
        os._exit(143)
    raise _Terminated()


def _die_with_parent(parent_pid: int) -> None:
    """A worker must not outlive the batch (issue 26): on Linux the kernel sends SIGTERM when the
    parent dies (PR_SET_PDEATHSIG); everywhere a watchdog thread checks the parent PID."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(143)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _worker_main(conn, parent_pid: int, kernel_name: str, staging_root: str, first_notebook: str) -> None:
    """Entry point of a worker process: runs the tasks the parent sends, one at a time, until the
    parent sends None (docs/design.md §8.5). Each message is `(task, next_notebook)`: the notebook of
    the run queued next (None when none is), for which the worker pre-starts a kernel."""
    global _BUSY, _SLOT
    _worker_init()
    _die_with_parent(parent_pid)
    _SLOT = warm.WarmSlot(kernel_name, Path(staging_root), first_notebook)
    _SLOT.refill()  # the first run's kernel starts while the task is on its way
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            if message is None:
                break
            task, _SLOT.next_notebook = message
            _BUSY = True
            try:
                result = execute_task(task, redirect_output=True, warm_slot=_SLOT)
            except _Terminated:
                _BUSY = False
                _SLOT.kill()
                os._exit(143)
            except BaseException as exc:  # noqa: BLE001 - e.g. the log itself cannot be written (disk full)
                result = {"key": task.key, "status": "failed", "seconds": None, "finished": _now(),
                          "error": first_error_line(exc, task.timeout_seconds)}
            finally:
                _BUSY = False
            conn.send(result)
    finally:
        _BUSY = False
        _SLOT.close()
        conn.close()


def _worker_init() -> None:
    """Workers leave Ctrl-C to the parent (which stops them) and stop cleanly on SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _raise_terminated)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the parent decides; it outlives a closed terminal


def first_error_line(exc: BaseException, timeout_seconds: int | None = None) -> str:
    """One Japanese line that says what went wrong in a run (for the summary and index.html)."""
    name = type(exc).__name__
    if name == "PapermillExecutionError":
        evalue = (str(getattr(exc, "evalue", "")) or "").strip().splitlines()
        cell = getattr(exc, "exec_count", None)
        where = f"（セル {cell}）" if cell is not None else ""
        return f"{exc.ename}: {evalue[0] if evalue else ''}{where}".strip()
    if name == "CellTimeoutError":
        return f"タイムアウト: セルの実行が制限時間（{timeout_seconds}秒）を超えました"
    if name == "DeadKernelError":
        return "カーネルが異常終了しました（メモリ不足の可能性があります）"
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        return f"ファイルを書き出せません{where}: {_os_reason(exc)}"
    text = str(exc).strip().splitlines()
    if name == "RuntimeError" and text and "Kernel didn't respond" in text[0]:
        return f"カーネルが起動しませんでした: {text[0]}"
    return f"{name}: {text[0] if text else ''}".strip()


_EXPORTER = None


def export_html(executed: Path, target: Path, title: str) -> None:
    """HTML report with code hidden (docs/design.md §7): inputs and prompts excluded, outputs kept."""
    import nbformat
    from nbconvert import HTMLExporter

    global _EXPORTER
    if _EXPORTER is None:  # once per process (a worker runs one run): loading the templates takes ~0.3 s
        _EXPORTER = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    nb = nbformat.read(str(executed), as_version=4)
    body, _ = _EXPORTER.from_notebook_node(nb, resources={"metadata": {"name": title}})
    target.write_text(body, encoding="utf-8")


def _replace_dir(src: Path, dst: Path) -> None:
    """Move a finished run folder into place; an older result is moved aside first, then deleted."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _cell_seconds(executed: Path) -> tuple[float, float]:
    """(sum of cell durations, first non-parameter code cell's duration) from papermill's metadata."""
    try:
        nb = json.loads(executed.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return float("nan"), float("nan")
    skip = {"parameters", "injected-parameters"}  # the imports are the first cell after these
    durations = [c.get("metadata", {}).get("papermill", {}).get("duration") for c in nb.get("cells", [])
                 if c.get("cell_type") == "code" and not skip & set(c.get("metadata", {}).get("tags", []))]
    durations = [d for d in durations if isinstance(d, (int, float))]
    return (float(sum(durations)), float(durations[0])) if durations else (0.0, 0.0)


def run_phases(timing: dict[str, float] | None) -> dict[str, float] | None:
    """Where a run's time went (issue 18 §4), from the timings `execute_task` records:
    kernel start, papermill overhead and the imports cell (`kernel_imports`), the other cells
    (`cells`) and the HTML export plus moving into place (`export`). None when not recorded."""
    if not timing or "papermill" not in timing:
        return None
    cells, first = timing.get("cells", 0.0), timing.get("first_cell", 0.0)
    if cells != cells or first != first:  # NaN: the executed notebook could not be read
        return None
    kernel = max(timing["papermill"] - cells, 0.0) + first
    work = max(cells - first, 0.0)
    export = max(timing.get("total", timing["papermill"]) - timing["papermill"], 0.0)
    return {"kernel_imports": round(kernel, 2), "cells": round(work, 2), "export": round(export, 2)}


def _phases_text(phases: dict[str, float] | None) -> str:
    if not phases:
        return ""
    return (f"起動・import {phases['kernel_imports']:.1f} 秒／セル {phases['cells']:.1f} 秒／"
            f"出力 {phases['export']:.1f} 秒")


class _RedirectedOutput:
    """Send this process's stdout/stderr (file descriptors 1 and 2, inherited by the kernel) to
    the run's log, so kernel and papermill warnings land in the log instead of the console."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.saved: list[int] = []

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        target = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            for fd in (1, 2):
                self.saved.append(os.dup(fd))
                os.dup2(target, fd)
        finally:
            os.close(target)
        return self

    def __exit__(self, *exc):
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in zip((1, 2), self.saved):
            os.dup2(saved, fd)
            os.close(saved)
        return False


def _take_warm_kernel(slot: "warm.WarmSlot | None", task: RunTask, tmp: Path, log) -> "warm.WarmKernel | None":
    """The worker's pre-started kernel, set to this run's folder and environment; None (papermill
    starts a kernel, as without warm workers) when there is none or it does not answer."""
    if slot is None:
        return None
    kernel = slot.take(task.kernel_name)
    if kernel is None:
        if slot.error:
            log.write(f"# 事前起動のカーネルを使わずに実行します（{slot.error}）\n")
        return None
    environ = {name: os.environ.get(name) for name in (settings.ENV_REPORT_FOLDER, settings.ENV_FIGURE_FORMATS)}
    try:
        kernel.prepare(str(tmp), environ, timeout=task.kernel_start_timeout)
    except Exception as exc:  # noqa: BLE001 - the cold path still runs the notebook
        log.write(f"# 事前起動のカーネルが応答しないため、新しいカーネルで実行します（{type(exc).__name__}: {exc}）\n")
        log.write(kernel.close())
        return None
    return kernel


def execute_task(task: RunTask, redirect_output: bool = False,
                 warm_slot: "warm.WarmSlot | None" = None) -> dict[str, Any]:
    """Run one notebook for one area; never raises for a notebook failure (returns status "failed").

    The notebook writes into a temporary folder (its `out_dir`), which is renamed into the final
    place only when execution and the HTML export succeeded (docs/design.md §7). With `redirect_output`
    (worker processes) everything the kernel prints goes to the run's log file. With `warm_slot`
    (batch workers) the run uses the worker's pre-started kernel and the next one starts and
    imports while this run computes (docs/design.md §8.5); without one, or when that kernel fails, papermill starts a kernel.
    """
    import contextlib
    import papermill

    t0 = time.perf_counter()
    run_dir = Path(task.run_dir)
    tmp_root = run_dir / ".tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{task.notebook_stem}_{task.muni_code}_", dir=tmp_root))
    _respect_umask(tmp)
    log_path = Path(task.log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    failed_copy = log_path.with_suffix(".failed.ipynb")
    executed = tmp / f"{task.notebook_stem}.ipynb"
    result: dict[str, Any] = {"key": task.key, "status": "failed", "error": "", "started": _now()}
    timing: dict[str, float] = {}
    set_formats = False
    log_path.write_text("", encoding="utf-8")
    redirect = _RedirectedOutput(log_path) if redirect_output else contextlib.nullcontext()
    with redirect, open(log_path, "a", encoding="utf-8", buffering=1) as log:
        log.write(f"# {task.notebook_stem} × {task.muni_code} {task.muni_name}  開始 {result['started']}\n")
        log.write(f"# ノートブック: {task.notebook_path}\n# パラメータ: "
                  f"{json.dumps(task.parameters, ensure_ascii=False, default=str)}\n")
        log.flush()
        try:
            parameters = {**task.parameters, "out_dir": str(tmp)}
            # the report names the final folder, not the staging one (inherited by the kernel)
            os.environ[settings.ENV_REPORT_FOLDER] = settings.report_folder(task.final_dir, run_dir)
            # PNG only per run unless the user asked for vector copies (settings.figure_formats);
            # the printable PDF is made once, on demand: `hsutils figures` (report.print_packs)
            if not os.environ.get(settings.ENV_FIGURE_FORMATS, "").strip():
                os.environ[settings.ENV_FIGURE_FORMATS] = ",".join(settings.BATCH_FIGURE_FORMATS)
                set_formats = True
            t_exec = time.perf_counter()
            kernel = _take_warm_kernel(warm_slot, task, tmp, log)
            if warm_slot is not None:
                warm_slot.refill()  # the next run's kernel starts and imports while this run computes
            engine = {"engine_name": warm.engine_name(), "km": kernel.km} if kernel is not None else {}
            timing["warm"] = 1.0 if kernel is not None else 0.0
            try:
                papermill.execute_notebook(
                    task.notebook_path, str(executed), parameters=parameters,
                    kernel_name=task.kernel_name, execution_timeout=task.timeout_seconds,
                    start_timeout=task.kernel_start_timeout, progress_bar=False, log_output=False,
                    stdout_file=log, stderr_file=log, cwd=str(tmp), **engine)
            except _Terminated:
                if warm_slot is not None:
                    warm_slot.next_notebook = None  # stopping: no kernel for a next run
                raise
            finally:
                timing["papermill"] = time.perf_counter() - t_exec
                timing["cells"], timing["first_cell"] = _cell_seconds(executed)
                if kernel is not None:
                    log.write(kernel.close())  # what the kernel printed outside the cells
                    warm_slot.in_use = None
                if warm_slot is not None:
                    warm_slot.refill()  # when the pre-start above failed: once more before the next run
            t_html = time.perf_counter()
            export_html(executed, tmp / f"{task.notebook_stem}.html",
                        f"{task.muni_name} {task.notebook_title}")
            timing["html"] = time.perf_counter() - t_html
            _privatise_confidential(tmp)
            _replace_dir(tmp, Path(task.final_dir))
            failed_copy.unlink(missing_ok=True)
            result["status"] = "ok"
        except _Terminated:
            result["status"] = "pending"  # never reported: the parent keeps it 未実行
            log.write("\n# 中断されました（一括実行の停止）\n")
            raise
        except Exception as exc:  # noqa: BLE001 - one run's failure must never stop the batch
            result["error"] = first_error_line(exc, task.timeout_seconds)
            log.write("\n# エラー: " + result["error"] + "\n")
            log.write("".join(traceback.format_exception(exc)))
            if executed.exists():  # keep the failed notebook next to the log for diagnosis
                try:
                    files.atomic_write_bytes(failed_copy, executed.read_bytes())
                except OSError as copy_error:  # disk full: no truncated copy, say why in the log
                    log.write(f"# 失敗したノートブックを保存できませんでした: {_os_reason(copy_error)}\n")
        finally:
            os.environ.pop(settings.ENV_REPORT_FOLDER, None)
            if set_formats:
                os.environ.pop(settings.ENV_FIGURE_FORMATS, None)
            shutil.rmtree(tmp, ignore_errors=True)
            timing["total"] = time.perf_counter() - t0
            result["seconds"] = round(timing["total"], 2)
            result["timing"] = {k: round(v, 3) for k, v in timing.items()}
            result["finished"] = _now()
            log.write(f"\n# 終了 {result['finished']}  状態: {STATUS_JA[result['status']]}  "
                      f"所要 {result['seconds']} 秒\n")
    return result


# ---------------------------------------------------------------------------------------------
# manifest and index (parent process only)
# ---------------------------------------------------------------------------------------------

def load_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST_NAME
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") == MANIFEST_FORMAT:
                return data
        except ValueError:
            pass  # a damaged manifest only costs a full re-run
    return {"format": MANIFEST_FORMAT, "runs": {}, "prepare": {}, "batches": []}


def save_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    manifest["updated"] = _now()
    files.atomic_write_text(Path(run_dir) / MANIFEST_NAME,
                       json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True))


def _entry_for(task: RunTask, status: str) -> dict[str, Any]:
    return {"status": status, "notebook": task.notebook_stem, "notebook_id": task.notebook_id,
            "title": task.notebook_title, "level": task.level, "muni_code": task.muni_code,
            "muni_name": task.muni_name, "report": task.report_rel, "log": task.log_rel,
            "resume_key": task.resume_key, "seconds": None, "error": "", "reused": False}


def _href(rel: str) -> str:
    return urllib.parse.quote(rel, safe="/")


_INDEX_CSS = """
body{font-family:"Hiragino Sans","Yu Gothic","Meiryo","Noto Sans CJK JP",sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:14px}th,td{border:1px solid #bbb;padding:4px 8px;vertical-align:top}
th{background:#eef2f7}td.area{white-space:nowrap}.ok{color:#0a6b2d;font-weight:bold}
.failed{color:#b00020;font-weight:bold}.pending{color:#777}.err{color:#b00020;font-size:12px;max-width:28em}
.sub{color:#555;font-size:12px}.na{color:#bbb;text-align:center}
"""


def render_index(manifest: dict[str, Any], keys: list[str] | None = None, run_name: str = "",
                 run_dir: Path | None = None) -> str:
    """index.html (Japanese): areas × notebooks with status, links to reports and logs, run time.

    With `run_dir`, a run whose folder holds the printable PDF (`hsutils figures`, `report.PRINT_PACK`)
    links it; otherwise the page says how to make it (issue 18: PDF on demand, not per run)."""
    runs = manifest.get("runs", {})
    keys = list(runs) if keys is None else keys
    entries = [runs[k] for k in keys if k in runs]
    notebooks: dict[str, str] = {}
    areas: dict[str, tuple[str, str]] = {}
    for e in sorted(entries, key=lambda e: (e["level"] != "pref", e["notebook"])):
        notebooks.setdefault(e["notebook"], e["title"])
    for e in sorted(entries, key=lambda e: (e["level"] != "pref", e["muni_code"])):
        areas.setdefault(e["muni_code"], (e["muni_name"], e["level"]))
    by_cell = {(e["muni_code"], e["notebook"]): e for e in entries}
    counts = {s: sum(1 for e in entries if e["status"] == s) for s in STATUS_JA}
    reused = sum(1 for e in entries if e["status"] == "ok" and e.get("reused"))
    prep = manifest.get("prepare", {})
    n_packs = 0

    rows = []
    for code, (name, level) in areas.items():
        label = "県全体" if level == "pref" else "市町村"
        cells = [f'<td class="area">{html.escape(code)} {html.escape(name)}<br><span class="sub">{label}</span></td>']
        for nb in notebooks:
            e = by_cell.get((code, nb))
            if e is None:
                cells.append('<td class="na">—</td>')
                continue
            status = e["status"]
            parts = [f'<span class="{status}">{STATUS_JA[status]}</span>']
            if status == "ok":
                parts.append(f' <a href="{_href(e["report"])}">レポート</a>')
                pack = PurePosixPath(e["report"]).parent / settings.PRINT_PACK
                if run_dir is not None and (Path(run_dir) / pack).is_file():
                    parts.append(f' <a href="{_href(pack.as_posix())}">印刷用PDF</a>')
                    n_packs += 1
            if e.get("seconds") is not None and status != "pending":
                note = "（前回の結果）" if e.get("reused") else ""
                parts.append(f'<br><span class="sub">{e["seconds"]:.1f} 秒{note}</span>')
                phases = _phases_text(run_phases(e.get("timing")))
                if phases:  # where the time went, so that a slow notebook is visible
                    parts.append(f'<br><span class="sub">{phases}</span>')
            if status == "failed":
                parts.append(f'<div class="err">{html.escape(e.get("error") or "")}</div>')
            if status != "pending":
                parts.append(f' <a class="sub" href="{_href(e["log"])}">ログ</a>')
            cells.append("<td>" + "".join(parts) + "</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th>{html.escape(nb)}<br><span class=\"sub\">{html.escape(t)}</span></th>"
                   for nb, t in notebooks.items())
    prep_line = ""
    if prep:
        how = "前回のキャッシュを再利用" if prep.get("reused") else f"{prep.get('seconds', 0):.1f} 秒"
        prep_line = (f"<p class=\"sub\">共有の集計（データ読み込み・集計キャッシュ）: この実行で "
                     f"{prep.get('executions', 0)} 回（{how}）</p>")
    if n_packs:
        pack_line = ("<p class=\"sub\">印刷用PDF: ノートブックごとに図をまとめた委員会資料用の PDF です"
                     "（図を作り直したあとは <code>hsutils figures</code> をもう一度実行してください）。</p>")
    else:
        # relative, as every report prints a folder: never the machine's absolute path
        where = html.escape(settings.shown_path(run_dir)) if run_dir is not None else "この一覧のフォルダ"
        pack_line = ("<p class=\"sub\">委員会資料用の印刷用 PDF（ノートブックごとに図を1つにまとめたもの）は "
                     f"<code>hsutils figures {where}</code> で作成できます。作成後はこの一覧からリンクされます。</p>")
    return f"""<!DOCTYPE html>
<html lang="ja"><head><meta charset="utf-8"><title>実行結果一覧 {html.escape(run_name)}</title>
<style>{_INDEX_CSS}</style></head><body>
<h1>実行結果一覧: {html.escape(run_name)}</h1>
<p>成功 {counts['ok']}（うち前回の結果を再利用 {reused}）／ 失敗 {counts['failed']} ／ 未実行 {counts['pending']}
　<span class="sub">更新: {html.escape((manifest.get('updated') or _now()).replace('T', ' '))}</span></p>
{prep_line}{pack_line}
<table><thead><tr><th>地域</th>{head}</tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table>
<p class="sub">未実行: まだ実行されていない、または中断された実行です（`hsutils batch … --resume` で続きを実行できます）。
失敗した実行はログと <code>logs/*.failed.ipynb</code> で原因を確認できます。</p>
</body></html>
"""


def _write_state(run_dir: Path, manifest: dict[str, Any], keys: list[str] | None, run_name: str) -> None:
    """Manifest first, then the index: both atomic, so an interruption never leaves a stale 成功."""
    if keys is not None:
        manifest["index_keys"] = list(keys)  # what index.html lists, for `refresh_index`
    save_manifest(run_dir, manifest)
    files.atomic_write_text(Path(run_dir) / INDEX_NAME, render_index(manifest, keys, run_name, run_dir))


def refresh_index(run_dir: Path) -> bool:
    """Rewrite a finished run's index.html (e.g. after `hsutils figures` made the printable PDFs);
    False when `run_dir` is not a batch run folder."""
    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    if not manifest.get("runs") or not (run_dir / INDEX_NAME).exists():
        return False
    files.atomic_write_text(run_dir / INDEX_NAME, render_index(manifest, manifest.get("index_keys"),
                                                              manifest.get("run_name", ""), run_dir))
    return True


# ---------------------------------------------------------------------------------------------
# the shared heavy pass
# ---------------------------------------------------------------------------------------------

def _import_callable(spec: str) -> Callable:
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr or "prepare_cache")
    except (ImportError, AttributeError) as e:
        raise ParameterError(f"共有集計の関数 {spec} を読み込めません: {e}") from None


def _cache_key(p: hparams.RunParams, data_hash: str, library_hash: str) -> str:
    cm = files.sha256_file(p.column_map) if p.column_map else ""
    return _sha256_bytes(f"{data_hash}|{cm}|{library_hash}|{hsutils.__version__}".encode())


def cache_checksums(cache_dir: Path) -> dict[str, str]:
    """relative path → sha256 of every file of the shared cache (recorded when written)."""
    root = Path(cache_dir)
    return {p.relative_to(root).as_posix(): files.sha256_file(p)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _cache_problem(cache_dir: Path, recorded: dict[str, str] | None) -> str:
    """Japanese reason why a cache cannot be reused, "" when its files match the recorded checksums."""
    if not cache_dir.is_dir():
        return "キャッシュのフォルダがありません"
    if not recorded:
        return "キャッシュの検査値（チェックサム）が記録されていません"
    try:
        actual = cache_checksums(cache_dir)
    except OSError as e:
        return f"キャッシュを読めません（{_os_reason(e)}）"
    for name, digest in recorded.items():
        if name not in actual:
            return f"キャッシュのファイル {name} がありません"
        if actual[name] != digest:
            return f"キャッシュのファイル {name} が書き込み途中か壊れています"
    return ""


def scheduler_for(p: hparams.RunParams) -> str | None:
    """The Dask scheduler of this batch, None for this machine: `--scheduler` (the CLI puts it in
    the environment variable HSUTILS_SCHEDULER) wins over the YAML key `scheduler:` (docs/design.md §8.3)."""
    from hsutils.analysis import cluster

    return os.environ.get(cluster.ENV_SCHEDULER) or p.scheduler or None


def prepare_shared(p: hparams.RunParams, manifest: dict[str, Any], cache_key: str,
                   prepare: Callable | None = None, reuse: bool = False) -> dict[str, Any]:
    """Run the heavy shared pass once into `<run>/confidential/cache` (docs/design.md §8) and return what
    happened, with the checksums of the files written.

    With `reuse`, a cache built from the same data, column map and library is kept as it is, but
    only if its files still match the checksums recorded when it was written; a corrupt or partial
    cache is rebuilt with a Japanese note.
    """
    cache_dir = p.run_dir / CACHE_SUBDIR
    previous = manifest.get("prepare") or {}
    if reuse and previous.get("cache_key") == cache_key:
        problem = _cache_problem(cache_dir, previous.get("files"))
        if not problem:
            return {"executions": 0, "reused": True, "seconds": 0.0, "cache_dir": str(cache_dir),
                    "cache_key": cache_key, "files": previous["files"], "at": _now()}
        print(f"注意: 共有の集計キャッシュを作り直します（{problem}: {cache_dir}）。", file=sys.stderr)
    fn = prepare or _import_callable(p.prepare_function)
    kwargs: dict[str, Any] = {"column_map": p.column_map}
    try:
        accepted = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        accepted = {}
    if "force" in accepted:
        kwargs["force"] = True  # recompute: a cache is reused only after the checks above
    scheduler = scheduler_for(p)
    if scheduler and "scheduler" in accepted:
        kwargs["scheduler"] = scheduler
    _make_private(cache_dir.parent)
    t0 = time.perf_counter()
    fn(p.data_dir, cache_dir, **kwargs)
    _make_private(cache_dir.parent)
    return {"executions": 1, "reused": False, "seconds": round(time.perf_counter() - t0, 2),
            "cache_dir": str(cache_dir), "cache_key": cache_key, "files": cache_checksums(cache_dir),
            "at": _now()}


# ---------------------------------------------------------------------------------------------
# the run-folder lock
# ---------------------------------------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


class RunLock:
    """`<run>/.batch.lock`: one batch (or `hsutils run`) at a time per run folder.

    The file holds the holder's PID, host and start time. A lock left by a process that no longer
    exists on this host is stale (the batch was killed) and is taken over with a note; a lock held
    from another host cannot be checked and must be removed by hand if that batch is gone.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.info = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(),
                     "command": " ".join(sys.argv[:4])}
        self.held = False

    def holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written right now, or damaged

    def _is_stale(self, info: dict[str, Any]) -> bool:
        if not info:  # unreadable: stale only when it has stayed so for a while
            try:
                return time.time() - self.path.stat().st_mtime > 60
            except OSError:
                return True
        return info.get("host") == socket.gethostname() and not _pid_alive(int(info.get("pid", 0)))

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                info = self.holder()
                if info is None:
                    continue
                if self._is_stale(info):
                    print(f"注意: 前回の一括実行のロック（PID {info.get('pid', '?')}、開始 "
                          f"{info.get('started', '?')}）が残っていましたが、そのプロセスは終了しているため"
                          "引き継ぎます。", file=sys.stderr)
                    self.path.unlink(missing_ok=True)
                    continue
                raise BatchLockedError(
                    f"出力フォルダ {self.path.parent} では別の一括実行が動いています（ホスト {info.get('host', '?')}、"
                    f"PID {info.get('pid', '?')}、開始 {info.get('started', '?')}）。終わるのを待ってから実行するか、"
                    "別の実行名（run_name）か --out を指定してください。そのプロセスがもう動いていないことが確かなら、"
                    f"ロックファイル {self.path} を削除してください。")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.info, f, ensure_ascii=False)
            self.held = True
            return
        raise BatchLockedError(f"ロックファイル {self.path} を作成できません。しばらくしてから再実行してください。")

    def release(self) -> None:
        if self.held and (self.holder() or {}).get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------

def _record(manifest: dict[str, Any], task: RunTask, result: dict[str, Any]) -> dict[str, Any]:
    entry = _entry_for(task, result["status"])
    entry.update({k: result.get(k) for k in ("seconds", "started", "finished", "timing")})
    if result.get("worker"):  # the Dask worker that ran it (hsutils.running.dispatch)
        entry["worker"] = result["worker"]
    entry["error"] = result.get("error", "")
    manifest["runs"][task.key] = entry
    return entry


@dataclasses.dataclass
class _Worker:
    """A worker process of the batch and the task it is running (None while idle)."""
    process: Any
    conn: Any
    task: RunTask | None = None
    result: dict[str, Any] | None = None


def _stop_workers(workers: list[_Worker]) -> None:
    """SIGTERM the running workers (each stops its kernels and cleans up), then reap them."""
    for w in workers:
        if w.process.is_alive():
            w.process.terminate()
    deadline = time.monotonic() + 15
    for w in workers:
        w.process.join(timeout=max(0.1, deadline - time.monotonic()))
        if w.process.is_alive():
            w.process.kill()
            w.process.join(timeout=5)
        w.conn.close()


def _death_message(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            how = f"シグナル {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"シグナル {-exitcode}"
    else:
        how = f"終了コード {exitcode}"
    return f"作業プロセスが結果を返さずに終了しました（{how}。メモリ不足や強制終了の可能性があります）"


def _progress_bar(total: int):
    """The batch's progress bar (both executors: local workers and `hsutils.running.dispatch`)."""
    from tqdm import tqdm

    return tqdm(total=total, desc="ノートブック実行", unit="本", file=sys.stderr, dynamic_ncols=True)


def _progress_step(bar, task: RunTask, result: dict[str, Any]) -> None:
    bar.update(1)
    bar.set_postfix_str(f"{task.notebook_id} {task.muni_name} {STATUS_JA[result['status']]}")


def _run_supervised(tasks: list[RunTask], jobs: int, on_result: Callable[[RunTask, dict], None]) -> bool:
    """Run the tasks in at most `jobs` worker processes, one task at a time per worker; returns
    False when interrupted. Each worker keeps a pre-started kernel (docs/design.md §8.5); a worker
    that dies fails only the run it was executing and is replaced; runs never started stay 未実行.
    (The other executor, on a Dask cluster, is `hsutils.running.dispatch.run_on_cluster`.)"""
    ctx = multiprocessing.get_context("spawn")  # same behaviour on Linux, macOS and Windows
    queue = list(tasks)
    workers: list[_Worker] = []
    staging = str(Path(tasks[0].run_dir) / ".tmp") if tasks else ""
    bar = _progress_bar(len(tasks))

    def spawn(number: int) -> _Worker:
        mine, theirs = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_worker_main, args=(theirs, os.getpid(), tasks[0].kernel_name, staging, queue[0].notebook_path),
                           name=f"hsutils-worker-{number}", daemon=False)
        proc.start()
        theirs.close()  # the parent keeps only its end: EOF when the worker dies
        return _Worker(proc, mine)

    def give_next(w: _Worker) -> None:
        """The next task to an idle worker, or None (stop) when there is none."""
        task = queue.pop(0) if queue else None
        try:
            w.conn.send(None if task is None else (task, queue[0].notebook_path if queue else None))
        except (OSError, ValueError):  # the worker died between runs: the task was never started
            if task is not None:
                queue.insert(0, task)
            return
        w.task, w.result = task, None

    def finish(w: _Worker, result: dict[str, Any]) -> None:
        task, w.task, w.result = w.task, None, None
        on_result(task, result)
        _progress_step(bar, task, result)

    spawned = 0
    try:
        while queue or any(w.task is not None for w in workers):
            while queue and len(workers) < jobs:
                spawned += 1
                w = spawn(spawned)
                workers.append(w)
                give_next(w)
            ready = set(_wait_ready([w.conn for w in workers] + [w.process.sentinel for w in workers],
                                    timeout=1.0))
            for w in list(workers):
                if w.conn in ready and w.task is not None:
                    try:
                        result = w.conn.recv()
                    except (EOFError, OSError):
                        result = None  # died: handled with its sentinel below
                    if result is not None:
                        finish(w, result)
                        give_next(w)
                if w.process.sentinel not in ready:
                    continue
                w.process.join()
                if w.task is not None and w.conn.poll(0):
                    try:
                        finish(w, w.conn.recv())
                    except (EOFError, OSError):
                        pass
                if w.task is not None:
                    finish(w, {"key": w.task.key, "status": "failed", "seconds": None,
                               "finished": _now(), "error": _death_message(w.process.exitcode)})
                w.conn.close()
                workers.remove(w)
        for w in workers:  # every idle worker was told to stop: reap them
            w.process.join(timeout=30)
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(timeout=5)
            w.conn.close()
        return True
    except KeyboardInterrupt:
        _stop_workers(workers)
        return False
    except BaseException:
        _stop_workers(workers)  # e.g. the manifest cannot be written (disk full): no orphaned runs
        raise
    finally:
        bar.close()


def _summary(manifest: dict[str, Any], keys: list[str], run_dir: Path, interrupted: bool) -> str:
    entries = [manifest["runs"][k] for k in keys]
    ok = [e for e in entries if e["status"] == "ok"]
    failed = [e for e in entries if e["status"] == "failed"]
    pending = [e for e in entries if e["status"] == "pending"]
    reused = sum(1 for e in ok if e.get("reused"))
    lines = [f"一括実行の結果: 成功 {len(ok)}（前回の結果を再利用 {reused}）／ 失敗 {len(failed)} ／ 未実行 {len(pending)}"]
    timed = [(e, run_phases(e.get("timing"))) for e in ok if not e.get("reused")]
    timed = [(e, ph) for e, ph in timed if ph]
    if timed:
        lines.append("所要時間（この実行で動かしたもの、ノートブックごとの中央値）:")
        for nb in sorted({e["notebook"] for e, _ in timed}):
            rows = [(e, ph) for e, ph in timed if e["notebook"] == nb]
            med = {k: _median([ph[k] for _, ph in rows]) for k in ("kernel_imports", "cells", "export")}
            lines.append(f"  {nb}: {len(rows)} 本、1本 {_median([e['seconds'] for e, _ in rows]):.1f} 秒"
                         f"（{_phases_text(med)}）")
        slowest, ph = max(timed, key=lambda t: t[0]["seconds"] or 0)
        lines.append(f"  最も遅い実行: {slowest['notebook']} × {slowest['muni_code']} {slowest['muni_name']} "
                     f"{slowest['seconds']:.1f} 秒（{_phases_text(ph)}）")
    if failed:
        lines.append("失敗した実行:")
        for e in failed:
            lines.append(f"  {e['notebook']} × {e['muni_code']} {e['muni_name']}: {e['error']}")
            lines.append(f"    ログ: {run_dir / e['log']}")
    if interrupted:
        lines.append("中断しました。続きは同じコマンドに --resume を付けて実行してください。")
    lines.append(f"一覧: {run_dir / INDEX_NAME}")
    return "\n".join(lines)


def _median(values: list[float]) -> float:
    import statistics

    return float(statistics.median(values)) if values else float("nan")


def _default_jobs(jobs: int | None) -> int:
    if jobs is None:
        return os.cpu_count() or 1
    if jobs < 1:
        raise ParameterError(f"並列数（--jobs）は1以上の整数で指定してください（指定値: {jobs}）。")
    return jobs


def _clean_tmp(run_dir: Path) -> None:
    shutil.rmtree(run_dir / ".tmp", ignore_errors=True)


def _on_stop_signal(signum, frame):
    raise KeyboardInterrupt  # one path for Ctrl-C, SIGTERM and SIGHUP: stop workers, keep state


def _install_stop_handlers() -> dict[int, Any]:
    """Ctrl-C, SIGTERM and SIGHUP all stop the batch cleanly. SIGINT is installed explicitly: a
    process started in the background of a script (`make demo &`, nohup, some schedulers) inherits
    SIGINT as *ignored*, and Python then never raises KeyboardInterrupt, so `kill -INT` did nothing."""
    saved = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and threading.current_thread() is threading.main_thread():
            saved[sig] = signal.signal(sig, _on_stop_signal)
    return saved


def _log_internal_error(run_dir: Path | None, exc: BaseException) -> Path:
    """Write the traceback where the user can send it to support; the console shows Japanese only."""
    text = f"# {_now()} 内部エラー\n" + "".join(traceback.format_exception(exc))
    for folder in ([Path(run_dir) / BATCH_LOG.parent] if run_dir else []) + [Path(tempfile.gettempdir())]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / (BATCH_LOG.name if run_dir and folder == Path(run_dir) / BATCH_LOG.parent
                             else f"hsutils-error-{os.getpid()}.log")
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
            return path
        except OSError:
            continue
    return Path("（ログを書き出せませんでした）")


def _output_error(e: OSError, p: hparams.RunParams | None, n_runs: int) -> str:
    where = e.filename or (p.run_dir if p else "")
    msg = f"出力先 {where} に書き込めません（{_os_reason(e)}）。"
    if e.errno in (errno.ENOSPC, errno.EDQUOT) and p is not None:
        free = shutil.disk_usage(p.out_dir if p.out_dir.exists() else Path(p.out_dir).anchor).free
        msg += (f"この一括実行にはおよそ {_mb(space_needed(p, n_runs))} 必要です（空き {_mb(free)}）。"
                "不要なファイルを削除するか、--out で空きのある場所を指定して --resume で続けてください。")
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        msg += "フォルダの権限を確認するか、--out で書き込める場所を指定してください。"
    return msg


def run_batch(params_path: Path, out: Path | None = None, jobs: int | None = None, resume: bool = False,
              *, prepare: Callable | None = None) -> int:
    """Run every planned notebook × area; returns the exit status (`EXIT_*`: 0 ok, 1 some runs failed,
    2 parameter/data/output problem before running, 3 interrupted, 4 internal error).

    `prepare` replaces `pipeline.prepare_cache` (tests); the YAML key `prepare_function`
    ("module:function") does the same from the command line. User mistakes raise HsutilsError
    (the CLI prints them, exit 2); everything else is reported here in Japanese.
    """
    p = hparams.load_params(Path(params_path), out=out)
    jobs = _default_jobs(jobs)
    saved = _install_stop_handlers()
    state: dict[str, Any] = {"runs": 0}
    try:
        try:
            p.run_dir.mkdir(parents=True, exist_ok=True)
            with RunLock(p.run_dir):
                return _run_batch_locked(p, jobs, resume, prepare, state)
        except OSError as e:
            print(f"エラー: {_output_error(e, p, state['runs'])}", file=sys.stderr)
            _log_internal_error(p.run_dir if p.run_dir.is_dir() else None, e)
            print(f"終了コード {EXIT_INPUT_ERROR}（{EXIT_MEANING_JA[EXIT_INPUT_ERROR]}）", file=sys.stderr)
            return EXIT_INPUT_ERROR
        except HsutilsError:
            raise
        except KeyboardInterrupt:
            print("中断しました。続きは同じコマンドに --resume を付けて実行してください。", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as e:  # noqa: BLE001 - never a bare traceback on the console
            log = _log_internal_error(p.run_dir, e)
            print(f"内部エラーで一括実行が止まりました（{type(e).__name__}）。詳しい内容はログにあります: {log}\n"
                  f"終了コード {EXIT_INTERNAL}（{EXIT_MEANING_JA[EXIT_INTERNAL]}）", file=sys.stderr)
            return EXIT_INTERNAL
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _run_batch_locked(p: hparams.RunParams, jobs: int, resume: bool, prepare: Callable | None,
                      state: dict[str, Any]) -> int:
    if p.missing_notebooks:
        print("注意: 見つからないノートブックは実行しません: " + "、".join(p.missing_notebooks), file=sys.stderr)
    run_dir = p.run_dir
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    _make_private(run_dir / CACHE_SUBDIR.parts[0])
    _clean_tmp(run_dir)
    manifest = load_manifest(run_dir)
    data_hash, library_hash = data_fingerprint(p.data_dir), library_fingerprint()
    cache_key = _cache_key(p, data_hash, library_hash)
    tasks = plan_tasks(p, run_dir / CACHE_SUBDIR)
    state["runs"] = len(tasks)
    to_run: list[RunTask] = []
    for task in tasks:
        task.resume_key = _resume_key(task, data_hash, library_hash, p.column_map)
        prev = manifest["runs"].get(task.key)
        if (resume and prev and prev.get("status") == "ok" and prev.get("resume_key") == task.resume_key
                and (run_dir / prev["report"]).exists()):
            prev["reused"] = True
            continue
        manifest["runs"][task.key] = _entry_for(task, "pending")
        to_run.append(task)
    keys = [t.key for t in tasks]
    scheduler = scheduler_for(p)
    if scheduler and to_run:  # a cluster that cannot run the notebooks is found before the shared pass
        from hsutils.running import dispatch

        dispatch.check_cluster(scheduler, to_run)
    batch_info = {"started": _now(), "params": str(p.source), "jobs": jobs, "resume": resume,
                  "planned": len(tasks), "to_run": len(to_run), "pid": os.getpid(),
                  "executor": f"dask {scheduler}" if scheduler else "local"}
    manifest.update({"run_name": p.run_name, "params": str(p.source), "data_dir": str(p.data_dir),
                     "data_hash": data_hash})
    manifest["batches"] = (manifest.get("batches") or [])[-19:] + [batch_info]
    _write_state(run_dir, manifest, keys, p.run_name)

    need, free = space_needed(p, len(to_run)), shutil.disk_usage(run_dir).free
    if to_run and free < need:
        print(f"注意: 出力先の空き容量（{_mb(free)}）が、この一括実行に必要な見込み（およそ {_mb(need)}）より"
              "少ないため、途中で容量不足になるおそれがあります。", file=sys.stderr)

    if to_run:
        print(f"共有の集計を準備しています（{p.data_dir}）…", file=sys.stderr)
        info = prepare_shared(p, manifest, cache_key, prepare=prepare, reuse=resume)
    else:
        info = {**(manifest.get("prepare") or {}), "executions": 0, "reused": True, "seconds": 0.0,
                "cache_dir": str(run_dir / CACHE_SUBDIR), "at": _now()}
    manifest["prepare"] = info
    batch_info["prepare_executions"] = info["executions"]
    _write_state(run_dir, manifest, keys, p.run_name)

    by_key = {t.key: t for t in tasks}
    t0 = time.perf_counter()

    def on_result(task: RunTask, result: dict) -> None:
        _record(manifest, by_key[task.key], result)
        _write_state(run_dir, manifest, keys, p.run_name)

    completed = True
    if to_run and scheduler:  # each run is one task on the cluster's workers (docs/design.md §8.6)
        from hsutils.running import dispatch

        print(f"計画 {len(tasks)} 本、うち前回の結果を再利用 {len(tasks) - len(to_run)} 本。", file=sys.stderr)
        completed = dispatch.run_on_cluster(to_run, scheduler, on_result)
    elif to_run:
        print(f"{len(to_run)} 本を {min(jobs, len(to_run))} 並列で実行します"
              f"（計画 {len(tasks)} 本、うち前回の結果を再利用 {len(tasks) - len(to_run)} 本）。", file=sys.stderr)
        completed = _run_supervised(to_run, min(jobs, len(to_run)), on_result)
    batch_info.update({"finished": _now(), "wall_seconds": round(time.perf_counter() - t0, 2),
                       "interrupted": not completed})
    _write_state(run_dir, manifest, keys, p.run_name)
    _clean_tmp(run_dir)
    if not completed:
        code = EXIT_INTERRUPTED
    else:
        code = EXIT_RUNS_FAILED if any(manifest["runs"][k]["status"] != "ok" for k in keys) else EXIT_OK
    print(_summary(manifest, keys, run_dir, interrupted=not completed))
    print(f"終了コード {code}（{EXIT_MEANING_JA[code]}）")
    return code


def run_one(notebook: str, muni: str | None = None, params: Path | None = None, out: Path | None = None,
            *, prepare: Callable | None = None) -> int:
    """Run one notebook (registry id or .ipynb path) for one municipality, in this process.

    The shared cache of the run folder is reused when data, column map and library are unchanged.
    The result is added to the run's manifest and index.html.
    """
    raw = hparams.load_raw(Path(params) if params else None)
    if out is not None:
        raw["out_dir"] = Path(out).resolve()
    spec = hparams.resolve_notebook(notebook, Path.cwd())
    raw["notebooks"] = [spec.file if Path(spec.file).is_absolute() else spec.id]
    if spec.level == "muni" and muni is None:
        raise ParameterError("市町村別のノートブックです。--muni で市町村コードを指定してください（例: --muni 17201）。")
    if spec.level in ("muni", "both") and muni is not None:
        raw["municipalities"] = [muni]
    p = hparams.validate(raw, Path(params) if params else None)
    p.run_dir.mkdir(parents=True, exist_ok=True)
    # a "both" notebook runs for the municipality given, or for the prefecture without --muni
    level = None if spec.level != "both" else ("muni" if muni is not None else "pref")
    with RunLock(p.run_dir):
        return _run_one_locked(p, prepare, level)


def _run_one_locked(p: hparams.RunParams, prepare: Callable | None, level: str | None = None) -> int:
    run_dir = p.run_dir
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    _make_private(run_dir / CACHE_SUBDIR.parts[0])
    manifest = load_manifest(run_dir)
    data_hash, library_hash = data_fingerprint(p.data_dir), library_fingerprint()
    cache_key = _cache_key(p, data_hash, library_hash)
    info = prepare_shared(p, manifest, cache_key, prepare=prepare, reuse=True)
    manifest["prepare"] = info
    (task,) = [t for t in plan_tasks(p, run_dir / CACHE_SUBDIR) if level is None or t.level == level]
    task.resume_key = _resume_key(task, data_hash, library_hash, p.column_map)
    manifest["runs"][task.key] = _entry_for(task, "pending")
    _write_state(run_dir, manifest, None, p.run_name)
    print(f"実行中: {task.notebook_stem} × {task.muni_code} {task.muni_name} …", file=sys.stderr)
    result = execute_task(task)
    _record(manifest, task, result)
    _write_state(run_dir, manifest, None, p.run_name)
    _clean_tmp(run_dir)
    if result["status"] == "ok":
        print(f"成功（{result['seconds']:.1f} 秒）: {Path(task.final_dir) / (task.notebook_stem + '.html')}")
        return 0
    print(f"失敗: {result['error']}\n  ログ: {task.log_path}")
    return 1

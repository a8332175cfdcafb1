"""Papermill batch runner: every notebook for every municipality, in worker processes (DESIGN §7–9).

`run_batch` (the `hsutils batch` command):
  1. validates the run parameters (`hsutils.params`);
  2. runs the shared heavy pass once (`pipeline.prepare_cache` into `<out>/<run>/cache`);
  3. plans one run per (prefecture-level notebook) and per (municipal notebook × municipality);
  4. executes them with papermill in a process pool (spawn context, never threads), each run in a
     temporary folder renamed into `<out>/<run>/<muni_code>_<name>/<notebook>/` only on success;
  5. keeps `manifest.json` (resume keys, timings, prepare count) and `index.html` (成功/失敗/未実行)
     up to date after every finished run, both written atomically.

The parent process is the only writer of the manifest and the index, so an interrupted batch
(Ctrl-C) leaves both consistent: runs whose result never reached the parent stay 未実行.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import html
import importlib
import inspect
import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import urllib.parse
import uuid
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable

from hsutils import params as hparams
from hsutils import files, settings
from hsutils.errors import ParameterError

# The shared cache holds person-level data (person_year etc.): it lives under confidential/ so that
# nobody hands it out with the committee reports (DESIGN §6).
CACHE_SUBDIR = settings.CACHE_SUBDIR

MANIFEST_NAME = "manifest.json"
INDEX_NAME = "index.html"
MANIFEST_FORMAT = 1
STATUS_JA = {"ok": "成功", "failed": "失敗", "pending": "未実行"}
EXIT_INTERRUPTED = 130


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------

def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def library_fingerprint() -> str:
    """Hash of the hsutils sources and package data: a library fix invalidates cached results."""
    return files.folder_fingerprint(settings.PACKAGE_DIR, ignore=("__pycache__",))


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


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
    """Prefecture-level notebooks once (muni_code = the prefecture), municipal ones × municipalities."""
    run_dir = p.run_dir
    tasks: list[RunTask] = []
    for spec in p.notebooks:
        areas = ([(p.pref_code5, p.pref_name)] if spec.level == "pref"
                 else list(p.municipalities.items()))
        for code, name in areas:
            final_dir = run_dir / f"{code}_{_safe_name(name)}" / spec.stem
            parameters = p.notebook_parameters_for(spec, muni_code=code, muni_name=name,
                                                   cache_dir=str(cache_dir), out_dir=str(final_dir))
            tasks.append(RunTask(
                key=f"{spec.stem}/{code}", notebook_id=spec.id, notebook_stem=spec.stem,
                notebook_title=spec.title, level=spec.level, notebook_path=str(p.notebook_path(spec)),
                muni_code=code, muni_name=name, parameters=parameters, run_dir=str(run_dir),
                final_dir=str(final_dir), log_path=str(run_dir / "logs" / f"{spec.stem}_{code}.log"),
                timeout_seconds=p.timeout_seconds, kernel_start_timeout=p.kernel_start_timeout,
                kernel_name=p.kernel_name))
    return tasks


def _resume_key(task: RunTask, data_hash: str, library_hash: str) -> str:
    """Hash of (input data, the run's parameters, the notebook's bytes, the library): same key ⇒ same result."""
    blob = json.dumps({
        "data": data_hash, "library": library_hash,
        "notebook": files.sha256_file(Path(task.notebook_path)),
        "parameters": task.parameters, "kernel": task.kernel_name,
    }, sort_keys=True, ensure_ascii=False, default=str)
    return _sha256_bytes(blob.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# the worker (runs in a child process)
# ---------------------------------------------------------------------------------------------

class _Terminated(BaseException):
    """Raised in a worker when the parent asks it to stop (SIGTERM after Ctrl-C)."""


_BUSY = False  # True while a worker executes a run (its SIGTERM then cleans up before exiting)


def _raise_terminated(signum, frame):  # pragma: no cover - runs in the worker
    if not _BUSY:
        os._exit(143)
    raise _Terminated()


def _execute_in_worker(task: "RunTask") -> dict[str, Any]:
    """Pool entry point: after a stop request the worker exits instead of taking the next run."""
    global _BUSY
    _BUSY = True
    try:
        return execute_task(task, redirect_output=True)
    except _Terminated:
        os._exit(143)
    finally:
        _BUSY = False


def _worker_init() -> None:
    """Workers leave Ctrl-C to the parent (which shuts the pool down) and stop cleanly on SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _raise_terminated)


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
    text = str(exc).strip().splitlines()
    if name == "RuntimeError" and text and "Kernel didn't respond" in text[0]:
        return f"カーネルが起動しませんでした: {text[0]}"
    return f"{name}: {text[0] if text else ''}".strip()


_EXPORTER = None


def export_html(executed: Path, target: Path, title: str) -> None:
    """HTML report with code hidden (DESIGN §7): inputs and prompts excluded, outputs kept."""
    import nbformat
    from nbconvert import HTMLExporter

    global _EXPORTER
    if _EXPORTER is None:  # one per worker process: loading the templates costs a few hundred ms
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


def execute_task(task: RunTask, redirect_output: bool = False) -> dict[str, Any]:
    """Run one notebook for one area; never raises for a notebook failure (returns status "failed").

    The notebook writes into a temporary folder (its `out_dir`), which is renamed into the final
    place only when execution and the HTML export succeeded (DESIGN §7). With `redirect_output`
    (worker processes) everything the kernel prints goes to the run's log file.
    """
    import contextlib
    import papermill

    t0 = time.perf_counter()
    run_dir = Path(task.run_dir)
    tmp_root = run_dir / ".tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{task.notebook_stem}_{task.muni_code}_", dir=tmp_root))
    log_path = Path(task.log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    failed_copy = log_path.with_suffix(".failed.ipynb")
    executed = tmp / f"{task.notebook_stem}.ipynb"
    result: dict[str, Any] = {"key": task.key, "status": "failed", "error": "", "started": _now()}
    timing: dict[str, float] = {}
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
            t_exec = time.perf_counter()
            try:
                papermill.execute_notebook(
                    task.notebook_path, str(executed), parameters=parameters,
                    kernel_name=task.kernel_name, execution_timeout=task.timeout_seconds,
                    start_timeout=task.kernel_start_timeout, progress_bar=False, log_output=False,
                    stdout_file=log, stderr_file=log, cwd=str(tmp))
            finally:
                timing["papermill"] = time.perf_counter() - t_exec
                timing["cells"], timing["first_cell"] = _cell_seconds(executed)
            t_html = time.perf_counter()
            export_html(executed, tmp / f"{task.notebook_stem}.html",
                        f"{task.muni_name} {task.notebook_title}")
            timing["html"] = time.perf_counter() - t_html
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
                shutil.copyfile(executed, failed_copy)
        finally:
            os.environ.pop(settings.ENV_REPORT_FOLDER, None)
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


def render_index(manifest: dict[str, Any], keys: list[str] | None = None, run_name: str = "") -> str:
    """index.html (Japanese): areas × notebooks with status, links to reports and logs, run time."""
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
            if e.get("seconds") is not None and status != "pending":
                note = "（前回の結果）" if e.get("reused") else ""
                parts.append(f'<br><span class="sub">{e["seconds"]:.1f} 秒{note}</span>')
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
    return f"""<!DOCTYPE html>
<html lang="ja"><head><meta charset="utf-8"><title>実行結果一覧 {html.escape(run_name)}</title>
<style>{_INDEX_CSS}</style></head><body>
<h1>実行結果一覧: {html.escape(run_name)}</h1>
<p>成功 {counts['ok']}（うち前回の結果を再利用 {reused}）／ 失敗 {counts['failed']} ／ 未実行 {counts['pending']}
　<span class="sub">更新: {html.escape((manifest.get('updated') or _now()).replace('T', ' '))}</span></p>
{prep_line}
<table><thead><tr><th>地域</th>{head}</tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table>
<p class="sub">未実行: まだ実行されていない、または中断された実行です（`hsutils batch … --resume` で続きを実行できます）。
失敗した実行はログと <code>logs/*.failed.ipynb</code> で原因を確認できます。</p>
</body></html>
"""


def _write_state(run_dir: Path, manifest: dict[str, Any], keys: list[str] | None, run_name: str) -> None:
    """Manifest first, then the index: both atomic, so an interruption never leaves a stale 成功."""
    save_manifest(run_dir, manifest)
    files.atomic_write_text(Path(run_dir) / INDEX_NAME, render_index(manifest, keys, run_name))


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
    return _sha256_bytes(f"{data_hash}|{cm}|{library_hash}".encode())


def prepare_shared(p: hparams.RunParams, manifest: dict[str, Any], cache_key: str,
                   prepare: Callable | None = None, reuse: bool = False) -> dict[str, Any]:
    """Run the heavy shared pass once into `<run>/cache` (DESIGN §8) and return what happened.

    With `reuse`, a cache built from the same data, column map and library is kept as it is.
    """
    cache_dir = p.run_dir / CACHE_SUBDIR
    previous = manifest.get("prepare") or {}
    if reuse and previous.get("cache_key") == cache_key and cache_dir.is_dir():
        return {"executions": 0, "reused": True, "seconds": 0.0, "cache_dir": str(cache_dir),
                "cache_key": cache_key, "at": _now()}
    fn = prepare or _import_callable(p.prepare_function)
    kwargs: dict[str, Any] = {"column_map": p.column_map}
    try:
        if "force" in inspect.signature(fn).parameters:
            kwargs["force"] = True  # a new batch recomputes; only --resume / run_one reuse the cache
    except (TypeError, ValueError):
        pass
    t0 = time.perf_counter()
    fn(p.data_dir, cache_dir, **kwargs)
    return {"executions": 1, "reused": False, "seconds": round(time.perf_counter() - t0, 2),
            "cache_dir": str(cache_dir), "cache_key": cache_key, "at": _now()}


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------

def _record(manifest: dict[str, Any], task: RunTask, result: dict[str, Any]) -> dict[str, Any]:
    entry = _entry_for(task, result["status"])
    entry.update({k: result.get(k) for k in ("seconds", "started", "finished", "timing")})
    entry["error"] = result.get("error", "")
    manifest["runs"][task.key] = entry
    return entry


def _terminate_pool(executor: ProcessPoolExecutor) -> None:
    """Stop the workers after Ctrl-C: cancel queued runs, SIGTERM the running ones, reap them.

    A worker's kernel exits by itself when its parent dies (ipykernel's parent poller).
    """
    processes = list((getattr(executor, "_processes", None) or {}).values())
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    executor.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + 15
    for proc in processes:
        proc.join(timeout=max(0.1, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)


def _run_pool(tasks: list[RunTask], jobs: int, on_result: Callable[[RunTask, dict], None]) -> bool:
    """Execute tasks in a spawn-context process pool; returns False when interrupted (Ctrl-C)."""
    from tqdm import tqdm

    ctx = multiprocessing.get_context("spawn")  # same behaviour on Linux, macOS and Windows
    executor = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init)
    bar = tqdm(total=len(tasks), desc="ノートブック実行", unit="本", file=sys.stderr, dynamic_ncols=True)
    try:
        pending = {executor.submit(_execute_in_worker, t): t for t in tasks}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                task = pending.pop(fut)
                try:
                    result = fut.result()
                except Exception as exc:  # noqa: BLE001 - a dead worker fails its run, not the batch
                    result = {"key": task.key, "status": "failed", "seconds": None,
                              "error": f"作業プロセスが異常終了しました: {first_error_line(exc)}"}
                on_result(task, result)
                bar.update(1)
                bar.set_postfix_str(f"{task.notebook_id} {task.muni_name} {STATUS_JA[result['status']]}")
        executor.shutdown(wait=True)
        return True
    except KeyboardInterrupt:
        _terminate_pool(executor)
        return False
    finally:
        bar.close()


def _summary(manifest: dict[str, Any], keys: list[str], run_dir: Path, interrupted: bool) -> str:
    entries = [manifest["runs"][k] for k in keys]
    ok = [e for e in entries if e["status"] == "ok"]
    failed = [e for e in entries if e["status"] == "failed"]
    pending = [e for e in entries if e["status"] == "pending"]
    reused = sum(1 for e in ok if e.get("reused"))
    lines = [f"一括実行の結果: 成功 {len(ok)}（前回の結果を再利用 {reused}）／ 失敗 {len(failed)} ／ 未実行 {len(pending)}"]
    if failed:
        lines.append("失敗した実行:")
        for e in failed:
            lines.append(f"  {e['notebook']} × {e['muni_code']} {e['muni_name']}: {e['error']}")
            lines.append(f"    ログ: {run_dir / e['log']}")
    if interrupted:
        lines.append("中断しました。続きは同じコマンドに --resume を付けて実行してください。")
    lines.append(f"一覧: {run_dir / INDEX_NAME}")
    return "\n".join(lines)


def _default_jobs(jobs: int | None) -> int:
    if jobs is None:
        return os.cpu_count() or 1
    if jobs < 1:
        raise ParameterError(f"並列数（--jobs）は1以上の整数で指定してください（指定値: {jobs}）。")
    return jobs


def _clean_tmp(run_dir: Path) -> None:
    shutil.rmtree(run_dir / ".tmp", ignore_errors=True)


def run_batch(params_path: Path, out: Path | None = None, jobs: int | None = None, resume: bool = False,
              *, prepare: Callable | None = None) -> int:
    """Run every planned notebook × area; returns the exit status (0 ok, 1 failures, 130 interrupted).

    `prepare` replaces `pipeline.prepare_cache` (tests); the YAML key `prepare_function`
    ("module:function") does the same from the command line.
    """
    p = hparams.load_params(Path(params_path), out=out)
    if p.missing_notebooks:
        print("注意: 見つからないノートブックは実行しません: " + "、".join(p.missing_notebooks), file=sys.stderr)
    jobs = _default_jobs(jobs)
    run_dir = p.run_dir
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    _clean_tmp(run_dir)
    manifest = load_manifest(run_dir)
    data_hash, library_hash = files.folder_fingerprint(p.data_dir), library_fingerprint()
    cache_key = _cache_key(p, data_hash, library_hash)
    tasks = plan_tasks(p, run_dir / CACHE_SUBDIR)
    to_run: list[RunTask] = []
    for task in tasks:
        task.resume_key = _resume_key(task, data_hash, library_hash)
        prev = manifest["runs"].get(task.key)
        if (resume and prev and prev.get("status") == "ok" and prev.get("resume_key") == task.resume_key
                and (run_dir / prev["report"]).exists()):
            prev["reused"] = True
            continue
        manifest["runs"][task.key] = _entry_for(task, "pending")
        to_run.append(task)
    keys = [t.key for t in tasks]
    batch_info = {"started": _now(), "params": str(p.source), "jobs": jobs, "resume": resume,
                  "planned": len(tasks), "to_run": len(to_run)}
    manifest.update({"run_name": p.run_name, "params": str(p.source), "data_dir": str(p.data_dir),
                     "data_hash": data_hash})
    manifest["batches"] = (manifest.get("batches") or [])[-19:] + [batch_info]
    _write_state(run_dir, manifest, keys, p.run_name)

    if to_run:
        print(f"共有の集計を準備しています（{p.data_dir}）…", file=sys.stderr)
        info = prepare_shared(p, manifest, cache_key, prepare=prepare, reuse=resume)
    else:
        info = {"executions": 0, "reused": True, "seconds": 0.0, "cache_dir": str(run_dir / CACHE_SUBDIR),
                "cache_key": (manifest.get("prepare") or {}).get("cache_key"), "at": _now()}
    manifest["prepare"] = info
    batch_info["prepare_executions"] = info["executions"]
    _write_state(run_dir, manifest, keys, p.run_name)

    by_key = {t.key: t for t in tasks}
    t0 = time.perf_counter()

    def on_result(task: RunTask, result: dict) -> None:
        _record(manifest, by_key[task.key], result)
        _write_state(run_dir, manifest, keys, p.run_name)

    completed = True
    if to_run:
        print(f"{len(to_run)} 本を {min(jobs, len(to_run))} 並列で実行します"
              f"（計画 {len(tasks)} 本、うち前回の結果を再利用 {len(tasks) - len(to_run)} 本）。", file=sys.stderr)
        completed = _run_pool(to_run, min(jobs, len(to_run)), on_result)
    batch_info.update({"finished": _now(), "wall_seconds": round(time.perf_counter() - t0, 2),
                       "interrupted": not completed})
    _write_state(run_dir, manifest, keys, p.run_name)
    _clean_tmp(run_dir)
    print(_summary(manifest, keys, run_dir, interrupted=not completed))
    if not completed:
        return EXIT_INTERRUPTED
    return 1 if any(manifest["runs"][k]["status"] != "ok" for k in keys) else 0


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
    if spec.level == "muni":
        if muni is None:
            raise ParameterError("市町村別のノートブックです。--muni で市町村コードを指定してください（例: --muni 17201）。")
        raw["municipalities"] = [muni]
    p = hparams.validate(raw, Path(params) if params else None)
    run_dir = p.run_dir
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(run_dir)
    data_hash, library_hash = files.folder_fingerprint(p.data_dir), library_fingerprint()
    cache_key = _cache_key(p, data_hash, library_hash)
    info = prepare_shared(p, manifest, cache_key, prepare=prepare, reuse=True)
    manifest["prepare"] = info
    (task,) = plan_tasks(p, run_dir / CACHE_SUBDIR)
    task.resume_key = _resume_key(task, data_hash, library_hash)
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

"""Batch runner under faults (issue 26): one test per row of the issue's table, plus the behaviours
that already held. Small data and tiny notebooks from tests/test_batch.py; processes are killed
by the PID the test (or its notebook) recorded, never by name.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hsutils.core import files
from hsutils.inputs import io
from hsutils.running import batch, cli, params
from hsutils.core.errors import DataError, ParameterError
from test_batch import PIN_LIBRARY, REPO, _manifest, _notebook, _pinned_library, _prepare_calls, project  # noqa: F401

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# A municipal notebook that records its kernel's and its worker's PIDs, then hangs for the chosen
# municipality (HSUTILS_TEST_HANG) so that the test can kill exactly that worker or the batch.
PID_BODY = '''
import os, time
from pathlib import Path
pids = Path(cache_dir).parent.parent.parent.parent / f"pids_{muni_code}.json"  # cache_dir = <tmp root>/out/t/confidential/cache
pids.write_text(f'{{"kernel": {os.getpid()}, "worker": {os.getppid()}}}', encoding="utf-8")
if os.environ.get("HSUTILS_TEST_HANG") == muni_code:
    time.sleep(300)
tables = Path(out_dir) / "tables"
tables.mkdir(parents=True, exist_ok=True)
(tables / "result.csv").write_text(f"muni_code\\n{muni_code}\\n", encoding="utf-8")
(Path(out_dir) / "confidential").mkdir()
(Path(out_dir) / "confidential" / "list.csv").write_text("person_id\\nA1\\n", encoding="utf-8")
'''


def _set(run_yaml: Path, **changes) -> None:
    cfg = yaml.safe_load(run_yaml.read_text(encoding="utf-8"))
    cfg.update(changes)
    run_yaml.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")


def _pid_project(project):
    root, run_yaml = project
    _notebook(root / "nbs" / "02_large_insurer.ipynb", PID_BODY)
    _set(run_yaml, municipalities=["17201", "17203"])
    return root, run_yaml


def _start_cli(root: Path, args: list[str], hang: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(REPO)]), "HSUTILS_TEST_HANG": hang}
    code = PIN_LIBRARY + "import sys; from hsutils.running import cli; sys.exit(cli.main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_pids(path: Path, proc: subprocess.Popen, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"batch ended early: {proc.communicate()}")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            time.sleep(0.2)
    raise AssertionError("the hanging notebook never started")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    return False


def _kill_quietly(*pids: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# --- row 1: kill -9 of one worker --------------------------------------------------------------

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kills processes by PID on Linux")
def test_killed_worker_fails_only_its_own_run(project):
    root, run_yaml = _pid_project(project)
    run_dir = root / "out" / "t"
    proc = _start_cli(root, ["batch", str(run_yaml), "--jobs", "2"], hang="17201")
    pids = {}
    try:
        pids = _wait_for_pids(root / "pids_17201.json", proc)
        os.kill(pids["worker"], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_quietly(*pids.values())
    assert proc.returncode == batch.EXIT_RUNS_FAILED == 1
    runs = _manifest(run_dir)["runs"]
    dead = runs["02_large_insurer/17201"]
    assert dead["status"] == "failed" and "作業プロセスが結果を返さずに終了しました（シグナル SIGKILL" in dead["error"]
    assert runs["02_large_insurer/17203"]["status"] == "ok"  # the healthy run was not touched
    assert runs["01_prefecture_overview/17000"]["status"] == "ok"
    assert (run_dir / dead["log"]).exists()  # the index links to a log that exists
    assert "BrokenProcessPool" not in stdout + stderr and "Traceback" not in stdout + stderr
    assert "終了コード 1（一部の実行が失敗）" in stdout
    assert not (run_dir / batch.LOCK_NAME).exists()


# --- row 2: kill -9 of the main process ---------------------------------------------------------

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_workers_die_with_killed_batch_and_resume_takes_over_stale_lock(project, capsys):
    root, run_yaml = _pid_project(project)
    run_dir = root / "out" / "t"
    proc = _start_cli(root, ["batch", str(run_yaml), "--jobs", "1"], hang="17201")
    pids = {}
    try:
        pids = _wait_for_pids(root / "pids_17201.json", proc)
        lock = json.loads((run_dir / batch.LOCK_NAME).read_text(encoding="utf-8"))
        assert lock["pid"] == proc.pid and lock["host"] == socket.gethostname() and lock["started"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        assert _wait_dead(pids["worker"], 20), "the worker outlived the killed batch"
        assert _wait_dead(pids["kernel"], 30), "the kernel outlived its worker"
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_quietly(*pids.values())
    assert (run_dir / batch.LOCK_NAME).exists()  # left behind by kill -9
    assert batch.run_batch(run_yaml, jobs=1, resume=True) == 0  # the env has no HANG here
    err = capsys.readouterr().err
    assert "ロック" in err and "引き継ぎます" in err
    log = (run_dir / "logs" / "02_large_insurer_17201.log").read_text(encoding="utf-8")
    assert log.count("# 終了") == 1  # one run, not two at once
    assert not (run_dir / batch.LOCK_NAME).exists()


# --- row 3: truncated Parquet (any file) in the shared cache --------------------------------------

def test_corrupt_cache_is_detected_and_rebuilt(project, capsys):
    root, run_yaml = project
    assert batch.run_one("02", muni="17201", params=run_yaml) == 0
    info = _manifest(root / "out" / "t")["prepare"]
    cache = root / "out" / "t" / batch.CACHE_SUBDIR / "counts.csv"
    assert info["files"] == {"counts.csv": files.sha256_file(cache)}
    cache.write_bytes(cache.read_bytes()[:10])  # truncated, as a killed writer would leave it
    capsys.readouterr()
    assert batch.run_one("02", muni="17203", params=run_yaml) == 0
    assert "共有の集計キャッシュを作り直します（キャッシュのファイル counts.csv が書き込み途中か壊れています" \
        in capsys.readouterr().err
    assert _prepare_calls(root) == 2
    cache.unlink()
    assert batch.run_one("02", muni="17203", params=run_yaml) == 0 and _prepare_calls(root) == 3
    assert batch.run_one("02", muni="17203", params=run_yaml) == 0 and _prepare_calls(root) == 3  # intact: reused


# --- row 4: output folder not writable; disk full --------------------------------------------------

def test_disk_full_says_how_much_space_is_needed(project, monkeypatch, capsys):
    root, run_yaml = project

    def full(path, text, encoding="utf-8"):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(files, "atomic_write_text", full)
    assert batch.run_batch(run_yaml, jobs=1) == batch.EXIT_INPUT_ERROR
    err = capsys.readouterr().err
    assert "ディスクの空き容量が足りません" in err and "この一括実行にはおよそ" in err and "MB 必要です" in err
    assert "Traceback" not in err and "作業プロセス" not in err
    assert "Traceback" in (root / "out" / "t" / "logs" / "batch.log").read_text(encoding="utf-8")


@pytest.fixture
def small_disk(tmp_path):
    """A 256 kB tmpfs (needs mount rights, e.g. root on Linux): a real full disk."""
    mnt = tmp_path / "small_disk"
    mnt.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                              capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        done = None
    if done is None or done.returncode != 0:
        pytest.skip("cannot mount a size-limited tmpfs here (needs root on Linux); disk full is simulated above")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=20)


def test_really_full_disk(project, small_disk, capsys):
    root, run_yaml = project
    _set(run_yaml, municipalities=["17201", "17203"], out_dir=str(small_disk))
    (small_disk / "filler").write_bytes(b"\0" * (200 * 1024))  # leaves room for the state, not for reports
    status = batch.run_batch(run_yaml, jobs=1)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert status in (batch.EXIT_RUNS_FAILED, batch.EXIT_INPUT_ERROR)
    if status == batch.EXIT_INPUT_ERROR:  # the parent itself could no longer write its state
        assert "ディスクの空き容量が足りません" in captured.err and "MB 必要です" in captured.err
    else:
        runs = _manifest(small_disk / "t")["runs"]
        assert any("ディスクの空き容量が足りません" in e["error"] for e in runs.values())
    assert not list((small_disk / "t" / "logs").glob("*.failed.ipynb.tmp"))
    for copy in (small_disk / "t" / "logs").glob("*.failed.ipynb"):
        json.loads(copy.read_text(encoding="utf-8"))  # complete or absent, never truncated


def test_permission_denied_output_folder_is_japanese(project, monkeypatch, capsys):
    root, run_yaml = project

    def denied(path, text, encoding="utf-8"):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(files, "atomic_write_text", denied)
    assert cli.main(["batch", str(run_yaml), "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert "アクセス権がありません" in err and "--out で書き込める場所" in err and "Traceback" not in err


@pytest.mark.skipif(IS_ROOT, reason="root can write into a 0555 folder")
def test_read_only_output_folder_really(project, capsys):  # pragma: no cover - not as root
    root, run_yaml = project
    out = root / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert cli.main(["batch", str(run_yaml), "--jobs", "1"]) == 2
    finally:
        out.chmod(0o755)
    assert "アクセス権がありません" in capsys.readouterr().err


def test_os_errors_in_a_run_are_japanese():
    e = OSError(errno.ENOSPC, "No space left on device", "/out/t/x.html")
    assert batch.first_error_line(e) == "ファイルを書き出せません /out/t/x.html: ディスクの空き容量が足りません"
    assert batch.first_error_line(PermissionError(errno.EACCES, "denied")) == \
        "ファイルを書き出せません: アクセス権がありません"


# --- row 5: two batches on the same run folder ------------------------------------------------------

def test_live_lock_refuses_second_batch(project, capsys):
    root, run_yaml = project
    run_dir = root / "out" / "t"
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / batch.LOCK_NAME).write_text(json.dumps(
            {"pid": holder.pid, "host": socket.gethostname(), "started": "2026-01-01T02:00:00+09:00"}),
            encoding="utf-8")
        assert cli.main(["batch", str(run_yaml), "--resume"]) == batch.EXIT_INPUT_ERROR
        err = capsys.readouterr().err
        assert f"PID {holder.pid}" in err and "別の一括実行が動いています" in err and "2026-01-01T02:00:00" in err
        assert cli.main(["run", "02", "--muni", "17201", "--params", str(run_yaml)]) == 2
        assert not (run_dir / "manifest.json").exists()  # nothing touched
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone now: its lock is stale and taken over
    assert batch.run_batch(run_yaml, jobs=2) == 1
    assert "引き継ぎます" in capsys.readouterr().err
    assert not (run_dir / batch.LOCK_NAME).exists()


def test_lock_from_another_host_is_not_taken_over(tmp_path):
    (tmp_path / batch.LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "other-host", "started": "x"}),
                                            encoding="utf-8")
    with pytest.raises(batch.BatchLockedError, match="ホスト other-host"):
        batch.RunLock(tmp_path).acquire()


# --- row 6: column map / targets YAML edited, then --resume ------------------------------------------

def test_resume_reruns_when_column_map_or_targets_change(project):
    root, run_yaml = project
    (root / "params" / "targets.yaml").write_text("targets: {kenshin_rate: 60}\n", encoding="utf-8")
    (root / "params" / "cmap.yaml").write_text("kenshin: {受診者ID: person_id}\n", encoding="utf-8")
    _set(run_yaml, municipalities=["17201", "17203"], column_map="cmap.yaml",
         notebook_parameters={"02": {"targets": "targets.yaml"}})
    run_dir = root / "out" / "t"
    assert batch.run_batch(run_yaml, jobs=2) == 0
    assert batch.run_batch(run_yaml, jobs=2, resume=True) == 0
    assert sum(e["reused"] for e in _manifest(run_dir)["runs"].values()) == 3 and _prepare_calls(root) == 1

    (root / "params" / "targets.yaml").write_text("targets: {kenshin_rate: 45}\n", encoding="utf-8")
    assert batch.run_batch(run_yaml, jobs=2, resume=True) == 0
    runs = _manifest(run_dir)["runs"]
    assert [k for k, e in runs.items() if e["reused"]] == ["01_prefecture_overview/17000"]  # 01 reads no targets
    assert _prepare_calls(root) == 1  # the cache does not depend on the targets

    (root / "params" / "cmap.yaml").write_text("kenshin: {受診者番号: person_id}\n", encoding="utf-8")
    assert batch.run_batch(run_yaml, jobs=2, resume=True) == 0
    assert not any(e["reused"] for e in _manifest(run_dir)["runs"].values())
    assert _prepare_calls(root) == 2  # the cache was rebuilt with the new column map


def test_resume_key_depends_on_library_version(project, monkeypatch):
    root, run_yaml = project
    p = params.load_params(run_yaml)
    task = batch.plan_tasks(p, root / "cache")[0]
    before = batch._resume_key(task, "d", "l")
    monkeypatch.setattr(batch.hsutils, "__version__", "9.9.9")
    assert batch._resume_key(task, "d", "l") != before


# --- row 7: misspelled parameter keys ------------------------------------------------------------------

@pytest.mark.parametrize("key, value, nearest", [
    ("municipalites", ["17201"], "municipalities"),
    ("suppress_treshold", 20, "suppress_threshold"),
])
def test_misspelled_key_is_an_error_naming_the_nearest(project, key, value, nearest):
    root, run_yaml = project
    _set(run_yaml, **{key: value})
    with pytest.raises(ParameterError, match=f"「{key}」（「{nearest}」の誤りではありませんか）"):
        params.load_params(run_yaml)


def test_unknown_key_without_near_match_lists_known_keys(project):
    root, run_yaml = project
    _set(run_yaml, zzz=1)
    with pytest.raises(ParameterError, match="「zzz」。使える項目名: .*municipalities"):
        params.load_params(run_yaml)


def test_every_key_of_defaults_and_demo_is_accepted():
    raw = params.load_raw(REPO / "parameters" / "demo.yaml")
    assert raw["run_name"] == "demo"


# --- row 8: unreadable input file, Excel lock file, `hsutils check` exit status -----------------------

def test_unreadable_input_file_is_named_in_japanese(project, monkeypatch, capsys):
    root, run_yaml = project
    target = root / "data" / "kenshin.csv"
    target.write_text("x\n", encoding="utf-8")
    real = files.sha256_file

    def sha(path):
        if Path(path) == target:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(files, "sha256_file", sha)
    with pytest.raises(DataError, match=f"入力ファイル {target} を読めません（アクセス権がありません）"):
        batch.data_fingerprint(root / "data")
    assert cli.main(["batch", str(run_yaml)]) == 2
    err = capsys.readouterr().err
    assert "kenshin.csv" in err and "Traceback" not in err


@pytest.mark.skipif(IS_ROOT, reason="root can read a chmod 000 file")
def test_chmod_000_input_really(project):  # pragma: no cover - not as root
    root, _ = project
    target = root / "data" / "kenshin.csv"
    target.write_text("x\n", encoding="utf-8")
    target.chmod(0)
    try:
        with pytest.raises(DataError, match="kenshin.csv を読めません"):
            batch.data_fingerprint(root / "data")
    finally:
        target.chmod(0o644)


def test_excel_lock_file_is_skipped_with_a_note(project):
    root, run_yaml = project
    data = root / "data"
    before = batch.data_fingerprint(data)
    (data / "~$kenshin.xlsx").write_bytes(b"\x00locked by excel")
    assert batch.data_fingerprint(data) == before  # opening a file in Excel does not invalidate --resume
    _, notes = io.find_table_files(data)
    assert any("Excel のロックファイルは使いません" in n and "~$kenshin.xlsx" in n for n in notes)
    assert batch.run_batch(run_yaml, jobs=2) == 1  # only the broken municipality fails


def test_check_exit_status(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["check", str(empty)]) == 1  # required files missing
    assert "判定: 読み込めないファイルまたは必須ファイルの不足があります" in capsys.readouterr().out
    demo = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(demo), "--scale", "0.005"]) == 0
    assert cli.main(["check", str(demo)]) == 0
    assert "判定: 分析に使用できます" in capsys.readouterr().out


# --- row 9: permissions ---------------------------------------------------------------------------------

@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o027, 0o640, 0o750)])  # group yes, others no
def test_outputs_follow_umask_and_confidential_stays_private(project, umask, file_mode, dir_mode):
    root, run_yaml = _pid_project(project)
    old = os.umask(umask)
    try:
        assert batch.run_batch(run_yaml, jobs=2) == 0
    finally:
        os.umask(old)
    run_dir = root / "out" / "t"
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    report_dir = run_dir / "17201_金沢市" / "02_large_insurer"
    assert mode(run_dir / "index.html") == file_mode and mode(run_dir / "manifest.json") == file_mode
    assert mode(report_dir / "02_large_insurer.html") == file_mode
    assert mode(report_dir) == dir_mode and mode(report_dir / "tables") == dir_mode
    assert mode(report_dir / "confidential") == 0o700
    assert mode(run_dir / "confidential") == 0o700  # the shared cache's folder


# --- row 10: exit status ------------------------------------------------------------------------------

def test_internal_error_exit_4_with_traceback_only_in_log(project, capsys):
    root, run_yaml = project

    def broken_prepare(data_dir, cache_dir, column_map=None):
        raise ZeroDivisionError("bug")

    assert batch.run_batch(run_yaml, jobs=1, prepare=broken_prepare) == batch.EXIT_INTERNAL == 4
    captured = capsys.readouterr()
    assert "内部エラー" in captured.err and "Traceback" not in captured.err + captured.out
    log = (root / "out" / "t" / "logs" / "batch.log").read_text(encoding="utf-8")
    assert "ZeroDivisionError: bug" in log and "Traceback" in log
    assert not (root / "out" / "t" / batch.LOCK_NAME).exists()


def test_exit_codes_are_distinct_and_summarised(project, capsys):
    assert len({batch.EXIT_OK, batch.EXIT_RUNS_FAILED, batch.EXIT_INPUT_ERROR, batch.EXIT_INTERRUPTED,
                batch.EXIT_INTERNAL}) == 5
    root, run_yaml = project
    assert batch.run_batch(run_yaml, jobs=2) == 1
    assert "終了コード 1（一部の実行が失敗）" in capsys.readouterr().out
    # the failed notebook is kept through an atomic write: complete or absent, never truncated
    copy = root / "out" / "t" / "logs" / "02_large_insurer_17202.failed.ipynb"
    assert json.loads(copy.read_text(encoding="utf-8"))["cells"]
    _set(run_yaml, municipalities=["17201"])
    assert batch.run_batch(run_yaml, jobs=2) == 0
    assert "終了コード 0（すべて成功）" in capsys.readouterr().out


def test_readme_documents_exit_codes_resume_and_lock():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## 夜間の一括実行で困ったとき"):]
    for needle in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 4 |", "--resume", batch.LOCK_NAME):
        assert needle in section


# --- behaviours that already held (issue 26: "so they stay held") ------------------------------------

@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="SIGHUP is POSIX")
@pytest.mark.parametrize("sig", ["SIGHUP", "SIGTERM"])
def test_sighup_and_sigterm_interrupt_cleanly(project, sig):
    root, run_yaml = _pid_project(project)
    run_dir = root / "out" / "t"
    proc = _start_cli(root, ["batch", str(run_yaml), "--jobs", "1"], hang="17201")
    pids = {}
    try:
        pids = _wait_for_pids(root / "pids_17201.json", proc)
        os.kill(proc.pid, getattr(signal, sig))
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_quietly(*pids.values())
    assert proc.returncode == batch.EXIT_INTERRUPTED
    assert "中断しました" in stdout and "Traceback" not in stderr
    assert _wait_dead(pids["worker"], 20)
    runs = _manifest(run_dir)["runs"]
    assert runs["02_large_insurer/17201"]["status"] == "pending"
    assert runs["02_large_insurer/17203"]["status"] == "pending"  # never started: 未実行, not 失敗
    assert not (run_dir / batch.LOCK_NAME).exists() and not (run_dir / ".tmp").exists()


def test_edited_data_csv_reruns_on_resume(project):
    root, run_yaml = project
    _set(run_yaml, municipalities=["17201"])
    assert batch.run_batch(run_yaml, jobs=2) == 0
    (root / "data" / "extra.csv").write_text("a\n1\n", encoding="utf-8")
    assert batch.run_batch(run_yaml, jobs=2, resume=True) == 0
    assert not any(e["reused"] for e in _manifest(root / "out" / "t")["runs"].values())

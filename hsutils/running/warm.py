"""Warm kernels for the batch workers (issue 18 item 2, docs/design.md §8.5).

A batch worker process keeps one *pre-started* Jupyter kernel that has already imported the
modules the batch's notebooks import (`notebook_imports`, `warm_up`: pandas, matplotlib, the
hsutils modules; the Japanese font is registered by importing `hsutils.publish.plots`), and the
modules hsutils itself imports in every run (`HSUTILS_RUN_IMPORTS`: openpyxl, pandas' Styler), but
holds no run state. A run takes that kernel, uses
it exactly once and shuts it down; the next run's kernel starts and imports as soon as a run has
taken its kernel, i.e. while that run computes (on another core when there is one).
No namespace is ever reused, so nothing leaks from one run into the next; what differs from a
kernel started for the run (its working folder and the run's environment variables) is set by
`set_run_state` before the first cell. When anything about the warm kernel fails, the run falls
back to the cold path (papermill starts its own kernel).

Two halves: `warm_up` and `set_run_state` run *inside* the kernel (they import nothing heavy at
module level); `WarmKernel` and `execute_with` run in the worker.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

#: HSUTILS_WARM_KERNELS=0 turns warm kernels off (every run starts its own kernel, as before).
ENV_WARM = "HSUTILS_WARM_KERNELS"
ENGINE_NAME = "hsutils_warm"

#: Kernel start-up lines (IPython's exec_lines run with store_history=False: the notebook's
#: execution counts are those of a fresh kernel, and no name is left in the user namespace).
#: `{modules}` is the tuple of `notebook_imports`.
_EXEC_LINES = ("import hsutils.running.warm as _hsutils_warm", "_hsutils_warm.warm_up({modules!r})",
               "del _hsutils_warm")


def notebook_imports(paths) -> tuple[str, ...]:
    """The modules the batch's notebooks import (`import x`, `from x import y`, y included when it
    is a submodule), in first-seen order: what a warm kernel imports before its run. Only these (and
    what hsutils itself imports in every run, `HSUTILS_RUN_IMPORTS`), so that a warm kernel holds
    no module the run would not have imported itself. A notebook
    that cannot be read or parsed adds nothing (the run reports its own problem)."""
    import ast
    import json

    found: dict[str, None] = {}
    for path in paths:
        try:
            nb = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for cell in nb.get("cells", []):
            if cell.get("cell_type") != "code":
                continue
            source = "".join(cell.get("source", ""))
            # IPython magics and shell lines are not Python: blank them, keep the line numbers
            source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
            try:
                tree = ast.parse(source)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        found.setdefault(alias.name, None)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.setdefault(node.module, None)
                    for alias in node.names:
                        if alias.name != "*":
                            found.setdefault(f"{node.module}.{alias.name}", None)  # a submodule, or skipped
    return tuple(found)


#: Modules hsutils imports inside every run when it first needs them: openpyxl for the notebook's
#: xlsx (`report.write_xlsx`), pandas' Styler (and with it jinja2) for `report.display_table`.
#: About 0.35 s of each run (Styler 0.13 s, openpyxl 0.22 s on the 2-core reference machine;
#: issue 18 §1); a warm kernel whose notebooks import hsutils imports them beforehand. They change no global setting
#: (tests/test_batch_warm.py).
HSUTILS_RUN_IMPORTS = ("openpyxl", "openpyxl.cell", "openpyxl.styles", "openpyxl.utils",
                       "pandas.io.formats.style")


def enabled() -> bool:
    return os.environ.get(ENV_WARM, "1").strip().lower() not in ("0", "false", "no", "off")


# ---------------------------------------------------------------------------------------------
# inside the kernel
# ---------------------------------------------------------------------------------------------

def warm_up(modules: tuple[str, ...]) -> None:
    """Import the notebooks' modules (`notebook_imports`; `hsutils.publish.plots` registers the
    Japanese font when imported) and, when they import hsutils, what hsutils imports during every
    run (`HSUTILS_RUN_IMPORTS`). `from x import y` gives both `x` and `x.y`: `x.y` is imported only
    when it is a submodule. A module that fails to import is left to the notebook, whose own import
    then reports the error."""
    import importlib
    import importlib.util

    if any(name == "hsutils" or name.startswith("hsutils.") for name in modules):
        modules = (*modules, *HSUTILS_RUN_IMPORTS)
    for name in modules:
        try:
            parent, _, leaf = name.rpartition(".")
            if parent and parent in sys.modules and hasattr(sys.modules[parent], leaf):
                continue  # an attribute (e.g. IPython.display.display) or a submodule already imported
            if parent and importlib.util.find_spec(name) is None:
                continue
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the run's own import shows the real error
            pass
    _fill_package_caches()


def _fill_package_caches() -> None:
    """Fill, in the warming kernel, what a run would otherwise fill on its first use, taken from the
    package alone (never from a run's data or parameters): the Japanese font loaded and its glyphs
    drawn once in a throw-away 300-dpi PNG (about 0.1 s on a run's first chart), and the NDB
    reference rates that `hsutils.analysis.references` caches per process (about 0.3 s). Only for
    modules the notebooks import (already imported above); settings are restored (`plots.style`
    is an rc_context), and a failure is left to the run."""
    import io

    plots = sys.modules.get("hsutils.publish.plots")
    if plots is not None:
        try:
            with plots.style():
                fig = plots._new_figure((2.0, 1.0))
                ax = fig.add_subplot()
                ax.set_title("特定健診受診率（%）令和6年度 0123456789 ‐ ≥")
                fig.savefig(io.BytesIO(), format="png", dpi=300)
        except Exception:  # noqa: BLE001
            pass
    references = sys.modules.get("hsutils.analysis.references")
    if references is not None:
        try:
            references.ndb_rates()
        except Exception:  # noqa: BLE001
            pass


def set_run_state(cwd: str, environ: dict[str, str | None]) -> None:
    """What a kernel started for the run would have inherited: its working folder and environment
    (None removes a variable)."""
    os.chdir(cwd)
    for key, value in environ.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# ---------------------------------------------------------------------------------------------
# in the worker
# ---------------------------------------------------------------------------------------------

class WarmKernel:
    """One pre-started, warmed kernel (jupyter_client AsyncKernelManager), used for one run.

    It starts in an empty staging folder (so that nothing there can shadow an import) with its
    output going to `kernel.log` in that folder; `close` appends that output to the run's log.
    The kernel dies with the worker (jupyter_client's JPY_PARENT_PID: ipykernel polls its parent).
    """

    def __init__(self, kernel_name: str, staging_root: Path, modules: tuple[str, ...] = (),
                 env: dict[str, str] | None = None):
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        self.kernel_name = kernel_name
        Path(staging_root).mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix="kernel_", dir=staging_root))
        self.log_path = self.staging / "kernel.log"
        self.km = AsyncKernelManager(kernel_name=kernel_name)
        self.pid: int | None = None
        extra = [f"--IPKernelApp.exec_lines={line.format(modules=tuple(modules))}" for line in _EXEC_LINES]
        try:
            with open(self.log_path, "ab") as log:  # the kernel keeps its own copy of the descriptor
                run_sync(self.km.start_kernel)(cwd=str(self.staging), extra_arguments=extra,
                                               stdout=log, stderr=log, env={**os.environ, **(env or {})})
            process = getattr(self.km.provisioner, "process", None)
            self.pid = getattr(process, "pid", None)
            if not self.pid:
                raise RuntimeError("カーネルのプロセス番号が分かりません")
        except BaseException:
            try:
                if self.km.has_kernel:
                    run_sync(self.km.shutdown_kernel)(now=True)
            except Exception:  # noqa: BLE001
                pass
            self.kill()
            raise

    def alive(self) -> bool:
        from jupyter_core.utils import run_sync

        try:
            return bool(self.km.has_kernel and run_sync(self.km.is_alive)())
        except Exception:  # noqa: BLE001
            return False

    def prepare(self, cwd: str, environ: dict[str, str | None], timeout: float) -> None:
        """Wait until the warm-up is done and give the kernel the run's folder and environment.
        Raises when the kernel does not answer in `timeout` seconds or the call fails."""
        from jupyter_client.blocking import BlockingKernelClient

        kc = BlockingKernelClient()
        kc.load_connection_info(self.km.get_connection_info())
        kc.start_channels(hb=False)
        try:
            kc.wait_for_ready(timeout=timeout)  # answered after the start-up lines (warm_up) ran
            code = (f"__import__('hsutils.running.warm', fromlist=['set_run_state'])"
                    f".set_run_state({cwd!r}, {environ!r})")
            reply = kc.execute_interactive(code, silent=True, store_history=False, timeout=timeout,
                                           output_hook=lambda msg: None)
            if reply["content"].get("status") != "ok":
                raise RuntimeError(f"set_run_state: {reply['content'].get('ename')} {reply['content'].get('evalue')}")
        finally:
            kc.stop_channels()

    def kill(self) -> None:
        """Stop the kernel now (its process group, as jupyter_client does) and remove the staging
        folder. Safe in a signal handler and when called twice (the PID is forgotten once killed,
        so that a PID reused by another process is never signalled)."""
        pid, self.pid = self.pid, None
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError, OSError):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError, OSError):
                    pass
        shutil.rmtree(self.staging, ignore_errors=True)

    def close(self) -> str:
        """Shut the kernel down (if the run has not) and return what it printed outside the cells."""
        from jupyter_core.utils import run_sync

        if self.pid is None:  # already closed or killed
            return ""
        try:
            if self.km.has_kernel:
                run_sync(self.km.shutdown_kernel)(now=True)
        except Exception:  # noqa: BLE001 - killed below whatever happened
            pass
        try:
            run_sync(self.km.cleanup_resources)()
        except Exception:  # noqa: BLE001
            pass
        try:
            printed = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            printed = ""
        self.kill()
        return printed


class WarmSlot:
    """The worker's one pre-started kernel: `take` hands it to a run (or None: cold path),
    `refill` starts the next one, warmed for the notebook the parent named as next
    (`next_notebook`; with several workers another worker may take that run, and this kernel then
    serves a run of another notebook: the import of an hsutils module changes no global state,
    `tests/test_batch_warm.py`)."""

    def __init__(self, kernel_name: str, staging_root: Path, next_notebook: str | None = None):
        self.kernel_name = kernel_name
        self._imports: dict[str, tuple[str, ...]] = {}
        self.staging_root = Path(staging_root)
        self.kernel: WarmKernel | None = None  # the spare, for the next run
        self.in_use: WarmKernel | None = None  # the one the current run took
        self.next_notebook = next_notebook  # the notebook of the next run; None: no next run
        self.error = ""

    def refill(self) -> None:
        """Pre-start the kernel for `next_notebook`, with that notebook's imports."""
        if self.kernel is not None or not self.next_notebook or not enabled():
            return
        if self.next_notebook not in self._imports:
            self._imports[self.next_notebook] = notebook_imports([self.next_notebook])
        try:
            self.kernel = WarmKernel(self.kernel_name, self.staging_root, self._imports[self.next_notebook])
            self.error = ""
        except Exception as exc:  # noqa: BLE001 - the run starts its own kernel instead
            self.kernel = None
            self.error = f"{type(exc).__name__}: {exc}"

    def take(self, kernel_name: str) -> WarmKernel | None:
        kernel, self.kernel = self.kernel, None
        if kernel is not None and (kernel.kernel_name != kernel_name or not kernel.alive()):
            self.error = "事前に起動したカーネルが使えません（終了しているか、カーネル名が違います）"
            kernel.close()
            kernel = None
        self.in_use = kernel
        return kernel

    def kill(self) -> None:
        """Signal-handler safe: stop both kernels now, without waiting for them."""
        for kernel in (self.in_use, self.kernel):
            if kernel is not None:
                kernel.kill()
        self.in_use = self.kernel = None

    def close(self) -> None:
        for kernel in (self.in_use, self.kernel):
            if kernel is not None:
                kernel.close()
        self.in_use = self.kernel = None


def _register_engine() -> None:
    """papermill engine `hsutils_warm`: nbclient with the given kernel manager, which nbclient then
    owns (its client is stopped and the kernel shut down after the last cell, as for a kernel it
    started itself)."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args

    class _OwnedKernelClient(PapermillNotebookClient):
        def execute(self, **kwargs: Any):
            self.shutdown_kernel = "immediate"
            return super().execute(cleanup_kc=True, **kwargs)

    class WarmEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
            kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout,
                                 kernel_name=kernel_name, log=logger, log_output=log_output, stdout_file=stdout_file,
                                 stderr_file=stderr_file)
            # papermill writes the whole notebook before and after every cell (about 60 writes of up
            # to 1.5 MB per run, 0.5-0.8 s); nobody reads it while the run is going. The writes at
            # the start and at the end (papermill's notebook_complete, also after a failed cell) stay.
            nb_man.save = _no_save
            try:
                return _OwnedKernelClient(nb_man, **final).execute()
            finally:
                del nb_man.save

    def _no_save(**kwargs: Any) -> None:
        return None

    papermill_engines.register(ENGINE_NAME, WarmEngine)


_ENGINE_READY = False


def engine_name() -> str:
    """The papermill engine that runs a notebook on a `WarmKernel` (pass `km=kernel.km`)."""
    global _ENGINE_READY
    if not _ENGINE_READY:
        _register_engine()
        _ENGINE_READY = True
    return ENGINE_NAME

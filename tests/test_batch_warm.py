"""Warm workers (issue 18 item 2, docs/design.md §8.5): a run on a pre-started kernel sees exactly what
a run on its own kernel sees, whether it is a worker's first run or comes after others.

The notebook records the state a leak would show (names, environment, pandas options, rcParams, open
figures, module attributes, working folder, execution count) and then changes all of it.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from hsutils.running import batch, warm
from test_batch import _manifest, _notebook, _pinned_library, project  # noqa: F401

LEAK_BODY = '''
import os, sys
from pathlib import Path
import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import hsutils
state = {
    "leftover_names": ",".join(sorted(n for n in ("LEAKED", "_hsutils_warm", "kernel") if n in globals())),
    "env_leak": os.environ.get("HSUTILS_TEST_LEAK", ""),
    "report_folder": "/".join(Path(os.environ.get("HSUTILS_REPORT_FOLDER", "")).parts[-2:]),  # without the run name
    "figure_formats": os.environ.get("HSUTILS_FIGURE_FORMATS", ""),
    "cwd_is_out_dir": Path.cwd().resolve() == Path(out_dir).resolve(),
    "max_rows": pd.get_option("display.max_rows"),
    "font_size": matplotlib.rcParams["font.size"],
    "open_figures": len(plt.get_fignums()),
    "module_attr": getattr(hsutils, "_test_leak", ""),
    "execution_count": get_ipython().execution_count,
    "muni_code": muni_code,
}
tables = Path(out_dir) / "tables"
tables.mkdir(parents=True, exist_ok=True)
(tables / "state.csv").write_text("key,value\\n" + "".join(f"{k},{v}\\n" for k, v in state.items()), encoding="utf-8")
# now everything a next run could inherit if a namespace or process were reused
LEAKED = 1
os.environ["HSUTILS_TEST_LEAK"] = muni_code
pd.set_option("display.max_rows", 3)
matplotlib.rcParams["font.size"] = 30
plt.figure()
hsutils._test_leak = muni_code
os.chdir("/")
'''


def _configure(run_yaml: Path, **changes) -> None:
    cfg = yaml.safe_load(run_yaml.read_text(encoding="utf-8"))
    cfg.update(changes)
    run_yaml.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")


def _state(run_dir: Path, code: str, name: str) -> bytes:
    return (run_dir / f"{code}_{name}" / "02_large_insurer" / "tables" / "state.csv").read_bytes()


def test_same_run_identical_first_after_others_and_cold(project, monkeypatch):
    root, run_yaml = project
    _notebook(root / "nbs" / "02_large_insurer.ipynb", LEAK_BODY)

    # 1. cold: papermill starts a kernel for the run (as before warm workers)
    monkeypatch.setenv(warm.ENV_WARM, "0")
    _configure(run_yaml, run_name="cold", notebooks=["02"], municipalities=["17203"])
    assert batch.run_batch(run_yaml, jobs=1) == 0
    cold = _state(root / "out" / "cold", "17203", "小松市")
    assert _manifest(root / "out" / "cold")["runs"]["02_large_insurer/17203"]["timing"]["warm"] == 0.0

    # 2. warm, the worker's first run
    monkeypatch.delenv(warm.ENV_WARM)
    _configure(run_yaml, run_name="first", notebooks=["02"], municipalities=["17203"])
    assert batch.run_batch(run_yaml, jobs=1) == 0
    first = _state(root / "out" / "first", "17203", "小松市")

    # 3. warm, after three other runs in the same worker (01 × 県, 02 × 17201, 02 × 17202)
    _configure(run_yaml, run_name="after", notebooks=["01", "02"], municipalities="all")
    assert batch.run_batch(run_yaml, jobs=1) == 0
    after = _state(root / "out" / "after", "17203", "小松市")
    runs = _manifest(root / "out" / "after")["runs"]
    assert [runs[k]["timing"]["warm"] for k in sorted(runs)] == [1.0] * 4  # every run used a warm kernel
    assert _manifest(root / "out" / "first")["runs"]["02_large_insurer/17203"]["timing"]["warm"] == 1.0

    assert first == cold and after == cold
    values = dict(line.split(",", 1) for line in cold.decode("utf-8").splitlines()[1:])
    # what a fresh kernel shows: nothing left over, the run's own folder and environment
    assert values["leftover_names"] == "" and values["env_leak"] == "" and values["module_attr"] == ""
    assert values["cwd_is_out_dir"] == "True" and values["open_figures"] == "0"
    assert values["max_rows"] == "60" and values["font_size"] == "10.0"
    assert values["execution_count"] == "4" and values["figure_formats"] == "png"  # as in a cold kernel
    assert values["report_folder"] == "17203_小松市/02_large_insurer"
    assert not (root / "out" / "after" / ".tmp").exists()  # the last pre-started kernel's folder is gone


SNAPSHOT = '''
import copy, json, os, sys, warnings
import matplotlib, numpy, pandas
def snapshot():
    return {"rc": {k: repr(v) for k, v in matplotlib.rcParams.items()},
            "pandas": {k: repr(pandas.get_option(k)) for k in sorted(pandas._config.config._registered_options)},
            "warnings": [repr(f) for f in warnings.filters], "numpy": repr(numpy.geterr()),
            "printoptions": repr(numpy.get_printoptions()), "env": dict(os.environ), "cwd": os.getcwd()}
from hsutils.running import warm
common, everything = json.loads(sys.argv[1])
warm.warm_up(tuple(common))
before = snapshot()
warm.warm_up(tuple(everything))
after = snapshot()
print(json.dumps({k: before[k] == after[k] for k in before}))
'''


def test_warm_up_imports_change_no_global_state():
    """A warm kernel may serve a run of another notebook than it was warmed for (several workers):
    the modules of all notebooks together leave the same global state a run could see (rcParams,
    pandas options, warning filters, numpy settings, environment, folder) as the modules every
    notebook imports itself."""
    import subprocess
    import sys

    nbs = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*.ipynb"))
    per_notebook = [warm.notebook_imports([nb]) for nb in nbs]
    common = [m for m in per_notebook[0] if all(m in mods for mods in per_notebook)]
    everything = warm.notebook_imports(nbs)
    assert {"hsutils.publish.plots", "hsutils.running.notebook"} <= set(common)
    assert "IPython.display.display" in everything  # `from x import y` lists y; warm_up skips non-modules
    out = subprocess.run([sys.executable, "-c", SNAPSHOT, json.dumps([common, everything])],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == {
        "rc": True, "pandas": True, "warnings": True, "numpy": True, "printoptions": True, "env": True, "cwd": True}


def test_warm_up_imports_what_hsutils_imports_in_every_run_without_changing_global_state():
    """Notebooks that import hsutils also get `HSUTILS_RUN_IMPORTS` (openpyxl for the xlsx, pandas'
    Styler for the tables), which change none of the global state a run could see; notebooks that
    do not import hsutils do not get them."""
    import subprocess
    import sys

    code = SNAPSHOT.split("from hsutils.running import warm")[0] + """
from hsutils.running import warm
warm.warm_up(("pandas",))
extra_without_hsutils = [m for m in warm.HSUTILS_RUN_IMPORTS if m in sys.modules]
run_imports, warm.HSUTILS_RUN_IMPORTS = warm.HSUTILS_RUN_IMPORTS, ()
warm.warm_up(("hsutils.publish.plots", "hsutils.publish.report"))
before = snapshot()
missing_before = [m for m in run_imports if m not in sys.modules]
warm.HSUTILS_RUN_IMPORTS = run_imports
warm.warm_up(("hsutils.publish.plots", "hsutils.publish.report"))
after = snapshot()
print(json.dumps({**{k: before[k] == after[k] for k in before}, "without_hsutils": extra_without_hsutils,
                  "missing_before": missing_before, "missing_after": [m for m in run_imports if m not in sys.modules]}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result.pop("missing_before") == list(warm.HSUTILS_RUN_IMPORTS)  # imported by the warm-up, not before
    assert result == {
        "rc": True, "pandas": True, "warnings": True, "numpy": True, "printoptions": True, "env": True, "cwd": True,
        "without_hsutils": [], "missing_after": []}


def test_warm_up_fills_package_caches_without_changing_global_state():
    """The warm-up also draws the Japanese font once and computes the NDB reference rates (package
    data only): the same global state as the imports alone, and the caches are filled."""
    import subprocess
    import sys

    code = SNAPSHOT.split("from hsutils.running import warm")[0] + """
import hsutils.publish.plots, hsutils.analysis.references as references
from hsutils.running import warm
before = snapshot()
warm._fill_package_caches()
after = snapshot()
print(json.dumps({**{k: before[k] == after[k] for k in before}, "ndb": references._ndb_rates.cache_info().currsize}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == {
        "rc": True, "pandas": True, "warnings": True, "numpy": True, "printoptions": True, "env": True, "cwd": True,
        "ndb": 1}


def test_notebook_imports_reads_import_statements(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%matplotlib inline\nimport numpy as np, os\nfrom hsutils.publish import plots, report\n"
                                          "from . import nothing\ndef f():\n    import json\n"),
                nbformat.v4.new_code_cell("this is not python ("), nbformat.v4.new_markdown_cell("import sys")]
    nbformat.write(nb, str(tmp_path / "a.ipynb"))
    assert warm.notebook_imports([tmp_path / "a.ipynb", tmp_path / "missing.ipynb"]) == (
        "numpy", "os", "hsutils.publish", "hsutils.publish.plots", "hsutils.publish.report", "json")


def test_failed_prestart_falls_back_to_a_kernel_of_its_own(project):
    """When the pre-start fails (here: an unknown kernel name), the run starts its own kernel as
    without warm workers, and its log says why."""
    from hsutils.running import params

    root, run_yaml = project
    _notebook(root / "nbs" / "02_large_insurer.ipynb", LEAK_BODY)
    _configure(run_yaml, notebooks=["02"], municipalities=["17203"])
    p = params.load_params(run_yaml)
    (task,) = batch.plan_tasks(p, p.run_dir / batch.CACHE_SUBDIR)
    slot = warm.WarmSlot("no-such-kernel", p.run_dir / ".tmp", task.notebook_path)
    slot.refill()
    assert slot.kernel is None and "NoSuchKernel" in slot.error
    try:
        result = batch.execute_task(task, warm_slot=slot)
    finally:
        slot.close()
    assert result["status"] == "ok" and result["timing"]["warm"] == 0.0
    assert "事前起動のカーネルを使わずに実行します（NoSuchKernel" in Path(task.log_path).read_text(encoding="utf-8")
    state = (Path(task.final_dir) / "tables" / "state.csv").read_text(encoding="utf-8")
    assert "cwd_is_out_dir,True" in state and "muni_code,17203" in state


def test_a_warm_run_writes_its_notebook_at_start_and_end_only(project, monkeypatch):
    """papermill writes the executed notebook before and after every cell; on a warm kernel only
    the first and the final write are made (nobody reads the file while the run is going), and the
    final notebook still has every cell's output and duration."""
    import nbformat
    import papermill.engines

    from hsutils.running import params

    root, run_yaml = project
    _notebook(root / "nbs" / "02_large_insurer.ipynb", LEAK_BODY)
    nb = nbformat.read(str(root / "nbs" / "02_large_insurer.ipynb"), as_version=4)
    nb.cells += [nbformat.v4.new_code_cell(f"print('cell {i}')") for i in range(4)]
    nbformat.write(nb, str(root / "nbs" / "02_large_insurer.ipynb"))
    _configure(run_yaml, notebooks=["02"], municipalities=["17203"])
    p = params.load_params(run_yaml)
    (task,) = batch.plan_tasks(p, p.run_dir / batch.CACHE_SUBDIR)

    writes = []
    real_write = papermill.engines.write_ipynb

    def counting_write(nb, path, *args, **kwargs):
        writes.append(path)
        return real_write(nb, path, *args, **kwargs)

    monkeypatch.setattr(papermill.engines, "write_ipynb", counting_write)
    slot = warm.WarmSlot("python3", p.run_dir / ".tmp", task.notebook_path)
    slot.refill()
    try:
        result = batch.execute_task(task, warm_slot=slot)
    finally:
        slot.close()
    assert result["status"] == "ok" and result["timing"]["warm"] == 1.0
    assert len(writes) == 2  # papermill alone: 18 (2, and 2 per cell for these 8 code cells)
    executed = nbformat.read(str(Path(task.final_dir) / f"{task.notebook_stem}.ipynb"), as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert [c.outputs[0]["text"] for c in code[-4:]] == [f"cell {i}\n" for i in range(4)]
    assert all(c.metadata.papermill["duration"] is not None for c in code)

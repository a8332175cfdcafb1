"""Browser check of the notebooks as a 保健師 meets them: JupyterLab in headless Chromium.

Not part of `make test` (it takes minutes and needs a browser). For each notebook it makes a copy
with ``interactive = True`` under ``outputs/browser_check/``, opens it in a JupyterLab started from
the repository (Japanese interface), runs all cells, changes the first control of the widget
panel and checks that the panel's output changes; it saves screenshots and prints one line per
notebook (errors, whether the panel changed and how long it took). Exit code 1 when a notebook
raised an error or its panel did not react.

Needs Chromium + chromedriver (Debian: ``apt-get install chromium chromium-driver``) and selenium
(``.venv/bin/pip install selenium``)::

    .venv/bin/python scripts/browser_check.py --shots /tmp/shots            # 01–09
    .venv/bin/python scripts/browser_check.py --shots /tmp/shots 04 07      # some notebooks

Screenshots: ``<nb>_top.png`` (title and first cells), ``<nb>_panel_before.png`` /
``<nb>_panel_after.png`` (the widget cell before and after the change), ``<nb>_reopen.png`` (the
widget cell after saving, closing and reopening the notebook without a kernel: with the widget
state saving that `make install` turns on, the panel as it was saved, not 「Loading widget...」;
a notebook whose reopened panel is missing counts as a failure).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from hsutils.publish.widgets import BUSY

ROOT = Path(__file__).resolve().parents[1]
FORM_NOTEBOOKS = ("09",)
#: what JupyterLab shows where a widget cannot be drawn from the saved notebook
REOPEN_FAILURES = ("Loading widget", "Error displaying widget", "model not found")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000", "--lang=ja"]
#: JupyterLab settings of the check: Japanese interface, every cell rendered (no windowing) so
#: that all outputs can be read, no news dialog.
LAB_SETTINGS = {
    "@jupyterlab/translation-extension/plugin.jupyterlab-settings": {"locale": "ja_JP"},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}


def notebook_copies(names: list[str], folder: Path) -> list[Path]:
    """Copies of the notebooks with ``interactive = True`` (the sources stay untouched)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sorted((ROOT / "notebooks").glob("0*.ipynb")):
        if names and src.name[:2] not in names:
            continue
        nb = json.loads(src.read_text(encoding="utf-8"))
        first = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        text = "".join(first["source"])
        new = re.sub(r"^interactive\s*=\s*False", "interactive = True", text, flags=re.M)
        if new == text:
            raise SystemExit(f"{src.name}: パラメータ interactive = False が見つかりません")
        first["source"] = new
        dst = folder / src.name
        dst.write_text(json.dumps(nb, ensure_ascii=False, indent=1), encoding="utf-8")
        out.append(dst)
    return sorted(out, key=lambda p: names.index(p.name[:2])) if names else out


def start_lab(port: int, token: str, work: Path) -> subprocess.Popen:
    settings = work / "settings"
    for name, value in LAB_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value), encoding="utf-8")
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(work / "ws"))
    cmd = [str(ROOT / ".venv/bin/jupyter"), "lab", "--no-browser", f"--port={port}", "--allow-root",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={ROOT}", "--LabApp.expose_app_in_browser=True",
           "--ServerApp.open_browser=False"]
    log = open(work / "lab.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
            return proc
        except OSError:
            time.sleep(1)
    proc.terminate()
    raise SystemExit(f"JupyterLab が起動しません（{work / 'lab.log'}）")


def make_driver(work: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROME_FLAGS + [f"--user-data-dir={work / 'chrome'}"]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


# --- JavaScript run in the page (window.jupyterapp is exposed by --LabApp.expose_app_in_browser)
# the open notebook (headless Chromium has no focus, so app.shell.currentWidget may be null)
JS_NB = ("const app = window.jupyterapp; const w = app && Array.from(app.shell.widgets('main'))"
         ".filter(x => x.content && x.sessionContext).pop();")  # the last opened
JS_STATE = JS_NB + """
if (!w || !w.content || !w.sessionContext) return null;
const k = w.sessionContext.session && w.sessionContext.session.kernel;
const cells = w.content.widgets.filter(c => c.model.type === 'code');
const errors = [];
for (const c of cells) for (const o of c.model.outputs.toJSON())
  if (o.output_type === 'error') errors.push(o.ename + ': ' + o.evalue);
return {status: k ? k.status : 'none', running: cells.filter(c => c.promptNode &&
        c.promptNode.textContent.includes('*')).length,
        unexecuted: cells.filter(c => c.model.executionCount === null).length, errors: errors};
"""
JS_PANEL_CELL = JS_NB + """
if (!w) return null;
const i = w.content.widgets.findIndex(c => c.model.type === 'code' &&
                                          /^if interactive/m.test(c.model.sharedModel.getSource()));
if (i < 0) return null;
const cell = w.content.widgets[i]; cell.node.scrollIntoView(); cell.node.id = 'panel-cell';
return i;
"""


def wait_idle(driver, timeout: float) -> dict:
    t0 = time.time()
    state = None
    while time.time() - t0 < timeout:
        state = driver.execute_script(JS_STATE)
        if state and state["status"] == "idle" and not state["running"]:
            return state
        time.sleep(1)
    return state or {"status": "timeout", "running": -1, "unexecuted": -1, "errors": ["timeout"]}


def panel_text(driver) -> str:
    """What the panel shows: its text and the end of each image (a chart changes only inside its
    PNG; 01's map panel has no other text that changes)."""
    return driver.execute_script(
        "const c = document.getElementById('panel-cell'); if (!c) return '';"
        "const o = c.querySelector('.jp-Cell-outputWrapper');"
        "return o.innerText + Array.from(o.querySelectorAll('img')).map(i => '\\n<img ' + i.src.length + ' ' + i.src.slice(-40) + '>').join('')")


def change_control(driver) -> str:
    """Change the panel's first slider (three steps right) or dropdown (next option)."""
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    cell = driver.find_element("id", "panel-cell")
    handles = cell.find_elements("css selector", ".widget-slider .noUi-handle")
    if handles:
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", handles[0])
        handles[0].click()
        for _ in range(3):
            handles[0].send_keys(Keys.ARROW_RIGHT)
        return "slider"
    selects = cell.find_elements("css selector", ".widget-dropdown select")
    if selects:
        sel = Select(selects[0])
        current = int(sel.first_selected_option.get_attribute("index"))
        sel.select_by_index(1 if current == 0 and len(sel.options) > 1 else 0)
        return "dropdown"
    return "none"


def check_notebook(driver, base: str, rel: str, token: str, shots: Path, timeout: float) -> dict:
    name = Path(rel).stem[:2]
    driver.get(f"{base}/lab/tree/{rel}?token={token}")
    for _ in range(120):
        if driver.execute_script(JS_STATE):
            break
        time.sleep(1)
    wait_idle(driver, 120)
    t0 = time.time()
    driver.execute_script(JS_NB + "app.shell.activateById(w.id); app.commands.execute('notebook:run-all-cells')")
    time.sleep(3)
    state = wait_idle(driver, timeout)
    seconds = time.time() - t0
    driver.execute_script(JS_NB + "w.content.widgets[0].node.scrollIntoView()")
    time.sleep(1)
    driver.save_screenshot(str(shots / f"{name}_top.png"))
    result = {"notebook": Path(rel).name, "seconds": round(seconds, 1), "errors": state["errors"],
              "unexecuted": state["unexecuted"], "control": "none", "changed": None, "update_seconds": None}
    if driver.execute_script(JS_PANEL_CELL) is None:
        return result
    time.sleep(2)
    cell = driver.find_element("id", "panel-cell")
    cell.screenshot(str(shots / f"{name}_panel_before.png"))
    before = panel_text(driver)
    t1 = time.time()
    result["control"] = change_control(driver)
    while time.time() - t1 < 60:  # the output changes (a 計算中… note counts as a change too)
        if panel_text(driver) != before:
            result["update_seconds"] = round(time.time() - t1, 1)
            break
        time.sleep(0.2)
    wait_idle(driver, 120)
    # several key presses are several updates, with short idle moments between them: wait until the
    # panel no longer says 計算中… (else the screenshot and the saved state catch it half-way)
    t2 = time.time()
    while BUSY in panel_text(driver) and time.time() - t2 < 120:
        time.sleep(0.5)
    time.sleep(2)
    result["changed"] = panel_text(driver) != before
    driver.find_element("id", "panel-cell").screenshot(str(shots / f"{name}_panel_after.png"))
    # reopen without a kernel: what a saved notebook shows where the panel was
    driver.execute_script(JS_NB + "app.shell.activateById(w.id); app.commands.execute('docmanager:save')")
    for _ in range(180):  # saving writes every widget's state too (large for 01's maps): wait for it
        time.sleep(1)
        if not driver.execute_script(JS_NB + "return !!(w && w.context.model.dirty)"):
            break
    result["saved"] = not driver.execute_script(JS_NB + "return !!(w && w.context.model.dirty)")
    driver.execute_script(JS_NB + "w.sessionContext.shutdown()")
    time.sleep(2)
    close_all(driver)
    driver.get(f"{base}/lab/tree/{rel}?token={token}")
    for _ in range(60):  # the notebook is loaded again
        if driver.execute_script(JS_NB + "return !!(w && w.content.widgets.length)"):
            break
        time.sleep(1)
    time.sleep(3)
    for b in driver.find_elements("css selector", ".jp-Dialog button.jp-mod-reject"):
        b.click()  # 「カーネルを選択」: no kernel
    time.sleep(2)
    if driver.execute_script(JS_PANEL_CELL) is not None:
        time.sleep(2)
        driver.find_element("id", "panel-cell").screenshot(str(shots / f"{name}_reopen.png"))
        text = panel_text(driver)
        result["reopen_text"] = text[:300]
        # the saved widget state (make install: saveState) draws the panel again, not an error
        result["reopen_panel"] = (bool(driver.find_elements("css selector", "#panel-cell .jupyter-widgets"))
                                  and not any(m in text for m in REOPEN_FAILURES))
    close_all(driver)
    return result


def close_all(driver) -> None:
    """Close every tab; a dialog (unsaved changes, kernel choice) is answered 「保存しない」/cancel, so
    that the next notebook starts alone (the check finds "the" notebook as the only one open)."""
    driver.execute_script("window.jupyterapp.commands.execute('application:close-all')")
    for _ in range(10):
        time.sleep(1)
        buttons = (driver.find_elements("css selector", ".jp-Dialog button.jp-mod-warn")  # 「破棄」 first
                   or driver.find_elements("css selector", ".jp-Dialog button.jp-mod-reject"))
        if buttons:
            buttons[0].click()
        elif not driver.execute_script("return Array.from(window.jupyterapp.shell.widgets('main')).length"):
            return


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", help="番号（例 04 07）。省略時は 01〜09 すべて")
    ap.add_argument("--shots", type=Path, required=True, help="スクリーンショットの保存先（リポジトリの外）")
    ap.add_argument("--port", type=int, default=8893)
    ap.add_argument("--timeout", type=float, default=900, help="1冊の実行の上限（秒）")
    args = ap.parse_args(argv)
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        print(f"{CHROMIUM} と {CHROMEDRIVER} が必要です", file=sys.stderr)
        return 2
    args.shots.mkdir(parents=True, exist_ok=True)
    copies = notebook_copies(args.notebooks, ROOT / "outputs" / "browser_check")
    work = Path(tempfile.mkdtemp(prefix="hsutils_browser_"))
    token = secrets.token_hex(16)
    lab = start_lab(args.port, token, work)
    driver = None
    results = []
    try:
        driver = make_driver(work)
        base = f"http://127.0.0.1:{args.port}"
        for nb in copies:
            try:
                r = check_notebook(driver, base, nb.relative_to(ROOT).as_posix(), token, args.shots, args.timeout)
            except Exception as exc:  # one notebook's browser trouble does not stop the others
                r = {"notebook": nb.name, "errors": [f"browser check: {type(exc).__name__}: {exc}"[:300]],
                     "unexecuted": None, "changed": None}
            results.append(r)
            print(json.dumps(r, ensure_ascii=False), flush=True)
    finally:
        if driver is not None:
            driver.quit()
        lab.terminate()
        lab.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    (args.shots / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    # 09's panel is an input form: changing a field shows nothing until 保存 is pressed
    bad = [r for r in results if r["errors"] or r["unexecuted"] or r.get("reopen_panel") is False
           or (r["changed"] is False and not r["notebook"].startswith(FORM_NOTEBOOKS))]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""The JupyterLab defaults the install writes for a 保健師: Japanese menus, and widget panels that
are still shown when a saved notebook is reopened.

`python -m hsutils.running.lab_settings` (run by `make install`; once by hand after a conda or pip
install, README.md) writes JupyterLab's ``overrides.json`` in the environment's application
settings folder (``<sys.prefix>/share/jupyter/lab/settings/``). Overrides are defaults only: a user
who changes a setting in 設定 keeps the change (JupyterLab stores it in the user's own settings).

* ``@jupyter-widgets/jupyterlab-manager:plugin`` ``saveState: true`` — on saving, JupyterLab writes
  the state of the notebook's widgets into the notebook (metadata ``widgets``), so a notebook
  reopened without its kernel draws the panels and their last result instead of
  「Loading widget...」/「Error displaying widget: model not found」 (docs/notebooks.md
  「保存したノートブックを開き直したとき」). The committed notebooks carry no such state:
  `notebook_check` treats it as an output and `--strip` removes it.
* ``@jupyterlab/translation-extension:plugin`` ``locale: "ja_JP"`` — the Japanese language pack
  (installed with the package) is used from the first start.

Settings already in the file (written by someone else) are kept; only these keys are set.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hsutils.core import files

#: plugin id → the settings this project sets in it
OVERRIDES = {
    "@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": True},
    "@jupyterlab/translation-extension:plugin": {"locale": "ja_JP"},
}


def settings_dir(prefix: str | Path | None = None) -> Path:
    """JupyterLab's application settings folder of the environment `prefix` (default: this one)."""
    return Path(prefix or sys.prefix) / "share" / "jupyter" / "lab" / "settings"


def write_overrides(prefix: str | Path | None = None) -> Path:
    """Merge `OVERRIDES` into the environment's overrides.json; return its path."""
    path = settings_dir(prefix) / "overrides.json"
    current = {}
    if path.exists():
        try:
            current = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            from hsutils.core.errors import DataError

            raise DataError(f"JupyterLab の設定ファイル「{path}」が JSON として読めません（{exc}）。"
                             "ファイルを直すか削除してから、もう一度実行してください。") from exc
    for plugin, values in OVERRIDES.items():
        current[plugin] = {**current.get(plugin, {}), **values}
    path.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write_text(path, json.dumps(current, ensure_ascii=False, indent=2) + "\n")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hsutils.running.lab_settings",
                                 description="JupyterLab の既定の設定（日本語表示・ウィジェットの状態の保存）を書き込む")
    ap.add_argument("--prefix", help="環境のフォルダ（省略時はこの Python の環境）")
    args = ap.parse_args(argv)
    print(f"JupyterLab の既定の設定を書き込みました: {write_overrides(args.prefix)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

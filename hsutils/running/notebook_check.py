"""The committed notebooks are the source: check (and optionally clean) them before a commit.

`python -m hsutils.running.notebook_check notebooks/` checks every .ipynb (usable as a pre-commit hook or CI
step; exit status 1 when something is wrong): valid nbformat 4, kernel metadata, every cell has an
id and ids are unique, no outputs, no execution counts and no saved widget state (metadata
``widgets``, which JupyterLab writes on saving when widget state saving is on, as `make install`
sets it: `hsutils.running.lab_settings`), and the first code cell is tagged `parameters` and only
assigns literal values (papermill overrides it, docs/design.md §9).
`--strip` first removes outputs, execution counts and widget state in place (cell ids and the other
metadata are kept).

`parameter_names` is also what the batch uses to pass a notebook only the parameters it declares
(`hsutils.running.params`).
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import nbformat

PARAMETERS_TAG = "parameters"
#: notebook metadata where JupyterLab saves the widgets' state (a result of running, like outputs)
WIDGET_STATE_KEY = "widgets"


def _read(nb_or_path) -> nbformat.NotebookNode:
    if isinstance(nb_or_path, nbformat.NotebookNode):
        return nb_or_path
    return nbformat.read(str(nb_or_path), as_version=nbformat.NO_CONVERT)


def parameters_cell(nb_or_path) -> nbformat.NotebookNode | None:
    """The cell tagged `parameters` (None when there is none)."""
    nb = _read(nb_or_path)
    return next((c for c in nb.cells if c.cell_type == "code"
                 and PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])), None)


def parameter_values(nb_or_path) -> dict:
    """name → default value of every assignment in the parameters cell (literals only)."""
    cell = parameters_cell(nb_or_path)
    if cell is None:
        return {}
    values = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def parameter_names(nb_or_path) -> list[str]:
    """Names the notebook declares in its parameters cell, in order."""
    return list(parameter_values(nb_or_path))


def problems(path) -> list[str]:
    """Japanese descriptions of what is wrong with one committed notebook (empty = fine)."""
    path = Path(path)
    try:
        nb = _read(path)
    except Exception as e:  # unreadable JSON or not a notebook: report, do not crash the hook
        return [f"{path}: ノートブックとして読めません（{e}）"]
    out = []
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as e:
        out.append(f"{path}: nbformat の形式に合いません（{e.message}）")
    if nb.nbformat != 4:
        out.append(f"{path}: nbformat 4 で保存してください（{nb.nbformat}）")
    kernel = nb.metadata.get("kernelspec", {})
    if not kernel.get("name") or not kernel.get("display_name"):
        out.append(f"{path}: カーネルの情報（metadata.kernelspec の name・display_name）がありません")
    ids = [c.get("id") for c in nb.cells]
    if any(not i for i in ids):
        out.append(f"{path}: id のないセルがあります（JupyterLab で保存し直してください）")
    if len(set(ids)) != len(ids):
        out.append(f"{path}: セルの id が重複しています")
    for k, c in enumerate(nb.cells, start=1):
        if c.cell_type != "code":
            continue
        if c.get("outputs"):
            out.append(f"{path}: {k}番目のセルに出力が残っています（出力を消してから保存してください）")
        if c.get("execution_count") is not None:
            out.append(f"{path}: {k}番目のセルに実行番号が残っています（出力を消してから保存してください）")
    if WIDGET_STATE_KEY in nb.metadata:
        out.append(f"{path}: ウィジェットの状態（metadata.{WIDGET_STATE_KEY}）が残っています"
                   "（--strip で消えます。または出力を消してから保存してください）")
    first = next((c for c in nb.cells if c.cell_type == "code"), None)
    if first is None or PARAMETERS_TAG not in first.get("metadata", {}).get("tags", []):
        out.append(f"{path}: 最初のコードセルに parameters タグがありません")
    else:
        try:
            parameter_values(nb)
        except (SyntaxError, ValueError) as e:
            out.append(f"{path}: parameters セルは「名前 = 値」（値は数値・文字列・リスト・辞書・None）"
                       f"だけにしてください（{e}）")
    return out


def strip(path) -> bool:
    """Remove outputs, execution counts and saved widget state in place; True when the file changed."""
    nb = _read(path)
    changed = nb.metadata.pop(WIDGET_STATE_KEY, None) is not None
    for c in nb.cells:
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None):
            c.outputs, c.execution_count, changed = [], None, True
    if changed:
        nbformat.write(nb, str(path))
    return changed


def notebook_files(paths) -> list[Path]:
    """The .ipynb files named or inside the named folders (checkpoints left out)."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in f.parts))
        elif p.suffix == ".ipynb":
            files.append(p)
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hsutils.running.notebook_check",
                                     description="コミットするノートブックの確認（出力なし・parameters セルなど）")
    parser.add_argument("paths", nargs="+", help="ノートブックまたはフォルダ")
    parser.add_argument("--strip", action="store_true", help="先に出力と実行番号を消す（ファイルを書き換えます）")
    args = parser.parse_args(argv)
    found = []
    for f in notebook_files(args.paths):
        if args.strip and strip(f):
            print(f"出力を消しました: {f}")
        found.extend(problems(f))
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

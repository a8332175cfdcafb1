"""Shared tail of the notebook generator scripts: kernel metadata and writing the .ipynb."""
from pathlib import Path

import nbformat

KERNEL_METADATA = {
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
}


def write_notebook(nb: nbformat.NotebookNode, out: Path, id_prefix: str | None = None) -> None:
    """Add the kernel metadata and write `nb` (without outputs) to `out`. With `id_prefix`, cells
    get stable ids, so regenerating gives the same file."""
    nb.metadata.update(KERNEL_METADATA)
    if id_prefix:
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"{id_prefix}-{i:02d}"
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    print(f"wrote {out}")

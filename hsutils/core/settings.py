"""Where things are: package data, repository, parameters, notebooks, inputs, outputs, caches.

The one place that knows paths, environment variables and their defaults (docs/design.md §7, §9). Every
other module asks here instead of computing `Path(__file__).parents[...]` itself.

Two ways the package runs:

* **from a checkout** (`pip install -e .`, the README's `make` commands): the repository root is
  the folder above the package that holds `pyproject.toml`; parameters, notebooks, demo data and
  outputs are found there.
* **installed** (a wheel, no repository): only the package and its data (`PACKAGE_DATA_DIR`) exist.
  Inputs and outputs default to the current folder; parameters and notebooks must be given
  (environment variables below or explicit paths), otherwise a clear Japanese error says so.

Environment variables (all optional):

==========================  ===========================================================================
``HSUTILS_DATA_DIR``        input data folder of a notebook opened by hand (default ``<work>/data/demo``)
``HSUTILS_OUT_DIR``         outputs root (default ``<work>/outputs``)
``HSUTILS_CACHE_DIR``       a shared cache already built (by a batch or the tests); used as it is
``HSUTILS_PARAMETERS_DIR``  folder with ``defaults.yaml`` and the example YAML files
                            (default ``<repo>/parameters``)
``HSUTILS_NOTEBOOK_DIR``    folder with the notebooks (default ``<repo>/notebooks``)
``HSUTILS_FIGURE_FORMATS`` figure files to write, e.g. ``png`` or ``png,pdf`` (default ``png,pdf``; the batch: ``png``)
``HSUTILS_REPORT_FOLDER``   set by the batch for each notebook run: the final output folder as a report
                            names it (relative, e.g. ``outputs/demo/17201_金沢市/04_nephropathy``),
                            because the notebook itself writes into a staging folder
==========================  ===========================================================================

``<work>`` is the repository root when there is one, else the current folder.

Person-level data: the shared cache holds person-level rows, so it is always placed under a run's
``confidential/`` folder (``cache_dir``), never next to the data or in a plain output folder
(docs/design.md §6).
"""
from __future__ import annotations

import os
from pathlib import Path

from hsutils.core.errors import ParameterError

__all__ = [
    "PACKAGE_DIR", "PACKAGE_DATA_DIR", "BOUNDARY_DIR", "ENV_DATA_DIR", "ENV_OUT_DIR", "ENV_CACHE_DIR",
    "ENV_PARAMETERS_DIR", "ENV_NOTEBOOK_DIR", "ENV_REPORT_FOLDER", "ENV_FIGURE_FORMATS", "DEFAULT_FIGURE_FORMATS",
    "BATCH_FIGURE_FORMATS", "figure_formats", "CONFIDENTIAL", "CACHE_SUBDIR", "INTERACTIVE_RUN",
    "repo_root", "work_root", "parameters_dir", "parameter_file", "defaults_file", "notebook_dir",
    "data_dir", "out_dir", "run_dir", "cache_dir", "env_path", "report_folder", "shown_path", "shown_out_dir",
]

#: The installed package and its data (always present, also in a wheel).
PACKAGE_DIR = Path(__file__).resolve().parents[1]
PACKAGE_DATA_DIR = PACKAGE_DIR / "data"
#: Shipped boundary files (国土数値情報 N03; hsutils/data/PROVENANCE.md).
BOUNDARY_DIR = PACKAGE_DATA_DIR / "boundaries"

ENV_DATA_DIR = "HSUTILS_DATA_DIR"
ENV_OUT_DIR = "HSUTILS_OUT_DIR"
ENV_CACHE_DIR = "HSUTILS_CACHE_DIR"
ENV_PARAMETERS_DIR = "HSUTILS_PARAMETERS_DIR"
ENV_NOTEBOOK_DIR = "HSUTILS_NOTEBOOK_DIR"
ENV_REPORT_FOLDER = "HSUTILS_REPORT_FOLDER"
ENV_FIGURE_FORMATS = "HSUTILS_FIGURE_FORMATS"
#: Figure files written by `report.save_figure` when nothing else is asked: PNG 300 dpi and the
#: vector PDF (a notebook opened by hand, the gallery, `hsutils run`). The batch asks for PNG only
#: (`BATCH_FIGURE_FORMATS`): a vector PDF costs about 1 CPU-second per figure with the embedded
#: Japanese font, six times the PNG (issue 18 §1); the paper copies come from `hsutils figures`.
DEFAULT_FIGURE_FORMATS = ("png", "pdf")
BATCH_FIGURE_FORMATS = ("png",)
#: Name of the printable copy of a notebook output's figures (`report.print_pack`, linked from index.html).
PRINT_PACK = "図表_印刷用.pdf"

#: Sub-folder of a run (and of a notebook's outputs) for person-level files (docs/design.md §6).
CONFIDENTIAL = "confidential"
#: The shared cache of a run: `<out>/<run>/confidential/cache` (person-level rows).
CACHE_SUBDIR = Path(CONFIDENTIAL) / "cache"
#: Run name of notebooks opened by hand (JupyterLab) and of `hsutils prepare`.
INTERACTIVE_RUN = "interactive"

DEFAULTS_NAME = "defaults.yaml"


def figure_formats() -> tuple[str, ...]:
    """Figure formats to write: ``HSUTILS_FIGURE_FORMATS`` (comma-separated, e.g. ``png,pdf``)
    when set, else `DEFAULT_FIGURE_FORMATS`. The batch sets it to `BATCH_FIGURE_FORMATS` for its
    runs unless the user has set it (vector copies on demand: ``HSUTILS_FIGURE_FORMATS=png,pdf``)."""
    value = os.environ.get(ENV_FIGURE_FORMATS, "").strip()
    if not value:
        return DEFAULT_FIGURE_FORMATS
    return tuple(f.strip().lower() for f in value.split(",") if f.strip())


def env_path(name: str) -> Path | None:
    """The path in environment variable `name`, or None when unset or empty."""
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def repo_root() -> Path | None:
    """The repository root (the folder above the package with `pyproject.toml`), or None when the
    package is installed without its repository."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() else None


def work_root() -> Path:
    """Base of the default data and output folders: the repository root, else the current folder."""
    return repo_root() or Path.cwd()


def _folder(env: str, sub: str, what: str) -> Path:
    given = env_path(env)
    if given is not None:
        if not given.is_dir():
            raise ParameterError(f"環境変数 {env} のフォルダ {given} がありません（{what}のフォルダを指定してください）。")
        return given.resolve()
    root = repo_root()
    if root is None or not (root / sub).is_dir():
        where = f"リポジトリの {sub}/ フォルダ" if root is None else f"{root / sub}"
        raise ParameterError(f"{what}のフォルダが見つかりません（{where}）。リポジトリから実行するか、"
                             f"環境変数 {env} でフォルダを指定してください。")
    return root / sub


def parameters_dir() -> Path:
    """Folder of `defaults.yaml` and the example parameter files (`HSUTILS_PARAMETERS_DIR` or
    `<repo>/parameters`); ParameterError when there is none."""
    return _folder(ENV_PARAMETERS_DIR, "parameters", "パラメータファイル（defaults.yaml など）")


def parameter_file(name: str) -> Path:
    """A file of the parameters folder, e.g. "evaluation_targets_demo.yaml"; ParameterError (Japanese)
    when the folder or the file is missing."""
    path = parameters_dir() / name
    if not path.is_file():
        raise ParameterError(f"パラメータファイル {path} が見つかりません。")
    return path


def defaults_file() -> Path:
    """`defaults.yaml`, which every run YAML is read over; ParameterError when missing."""
    return parameter_file(DEFAULTS_NAME)


def notebook_dir() -> Path:
    """Folder of the notebooks (`HSUTILS_NOTEBOOK_DIR` or `<repo>/notebooks`); ParameterError when missing."""
    return _folder(ENV_NOTEBOOK_DIR, "notebooks", "ノートブック")


def demo_data_dir() -> Path:
    """Folder of the generated demo data (`make demo`, a notebook's first run): `<work>/data/demo`."""
    return (work_root() / "data" / "demo").resolve()


def data_dir(explicit=None) -> Path:
    """Input data folder: `explicit`, else `HSUTILS_DATA_DIR`, else `demo_data_dir()` (absolute)."""
    return Path(explicit or env_path(ENV_DATA_DIR) or demo_data_dir()).resolve()


def out_dir(explicit=None) -> Path:
    """Outputs root: `explicit`, else `HSUTILS_OUT_DIR`, else `<work>/outputs` (absolute)."""
    return Path(explicit or env_path(ENV_OUT_DIR) or work_root() / "outputs").resolve()


def run_dir(run_name: str = INTERACTIVE_RUN, out=None) -> Path:
    """Folder of one run: `<outputs root>/<run_name>`."""
    return out_dir(out) / run_name


def cache_dir(explicit=None, run_name: str = INTERACTIVE_RUN, out=None) -> Path:
    """The shared (person-level) cache: `explicit`, else `HSUTILS_CACHE_DIR`, else
    `<outputs root>/<run_name>/confidential/cache`, so it is never written outside `confidential/`."""
    return Path(explicit or env_path(ENV_CACHE_DIR) or run_dir(run_name, out) / CACHE_SUBDIR).resolve()


def report_folder(final_dir, run_dir) -> str:
    """How reports name a batch run's final output folder: relative to the folder that holds the
    outputs root, e.g. ``outputs/demo/17201_金沢市/04_nephropathy`` (never the machine's absolute
    path, never the staging folder the notebook writes into). The batch passes it to the kernel
    in `ENV_REPORT_FOLDER`."""
    final, base = Path(final_dir).resolve(), Path(run_dir).resolve().parent.parent
    return final.relative_to(base).as_posix()


def shown_path(path) -> str:
    """A file or folder as a report may print it (relative, forward slashes): relative to the
    repository (work) root or to the outputs root's parent; else only its name — a report never
    prints the machine's absolute path."""
    path = Path(path).resolve()
    for base in (work_root().resolve(), out_dir().parent):
        if path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    return path.name


def shown_out_dir(folder) -> str:
    """A notebook's output folder as its report prints it: the batch's final folder
    (`ENV_REPORT_FOLDER`, since the notebook writes into a staging folder) when set, else
    `shown_path(folder)`."""
    return os.environ.get(ENV_REPORT_FOLDER, "").strip() or shown_path(folder)

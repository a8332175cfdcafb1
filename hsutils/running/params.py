"""Run parameters for the batch runner: load a run YAML over `parameters/defaults.yaml`, validate.

docs/design.md §9: a batch passes parameters to notebooks as dicts through papermill's Python API; this
module turns a YAML run file into one validated `RunParams` and knows which notebooks exist
(`NOTEBOOKS`). Every message a user reads is Japanese (`hsutils.core.errors.ParameterError`).
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import yaml

from hsutils.core import settings, vocab
from hsutils.analysis import areas
from hsutils.core.errors import ParameterError


@dataclasses.dataclass(frozen=True)
class NotebookSpec:
    """One notebook of the suite. `level` "pref" runs once per batch, "muni" once per municipality,
    "both" once for the prefecture and once per municipality (08: the prefecture's comparison and
    each municipality's own lists).

    Applicability (e.g. 02 needs districts) is the notebook's own business: it must handle
    "no district data" gracefully, so the batch still runs it for every municipality.
    """
    id: str
    file: str
    level: str
    title: str

    @property
    def stem(self) -> str:
        """Folder name of this notebook's outputs (docs/design.md §7), e.g. "02_large_insurer"."""
        return Path(self.file).stem


NOTEBOOKS: dict[str, NotebookSpec] = {s.id: s for s in (
    NotebookSpec("01", "01_prefecture_overview.ipynb", "pref", "県全体の概況"),
    NotebookSpec("02", "02_large_insurer.ipynb", "muni", "大規模保険者（地区分析）"),
    NotebookSpec("03", "03_ikkatsu.ipynb", "muni", "高齢者の保健事業と介護予防の一体的実施"),
    NotebookSpec("04", "04_nephropathy.ipynb", "muni", "糖尿病性腎症重症化予防"),
    NotebookSpec("05", "05_evaluation.ipynb", "muni", "目標設定・評価指標・事業評価"),
    NotebookSpec("06", "06_medical_costs.ipynb", "both", "医療費の分析"),
    NotebookSpec("07", "07_medication.ipynb", "muni", "適正服薬（重複・多剤服薬）"),
    NotebookSpec("08", "08_nonparticipants.ipynb", "both", "健診未受診者対策"),
    # 連合会 level: one run per batch covers every insurer of the prefecture (docs/support_record.md §7)
    NotebookSpec("09", "09_support_record.ipynb", "pref", "保険者支援の記録"),
)}

PREFECTURE_NAMES = vocab.PREF_NAMES  # JIS X 0401 (hsutils.core.vocab)

FY_RANGE = (2008, 2035)  # same plausible range as schema.FY
PATH_KEYS = ("data_dir", "column_map", "out_dir", "notebook_dir")
# Run keys that defaults.yaml does not list (advanced/test use); every key of defaults.yaml is known too.
EXTRA_RUN_KEYS = ("notebook_dir", "prepare_function", "scheduler")


@dataclasses.dataclass
class RunParams:
    """A validated run. Paths are absolute; `municipalities` maps code → name in master order."""
    source: Path
    prefecture: int
    pref_name: str
    fiscal_years: list[int]
    municipalities: dict[str, str]
    notebooks: list[NotebookSpec]
    notebook_dir: Path
    data_dir: Path
    column_map: Path | None
    reference_area: str
    standard_population: str
    suppress_threshold: int
    out_dir: Path
    run_name: str
    timeout_seconds: int
    kernel_start_timeout: int
    kernel_name: str
    interactive: bool
    prepare_function: str
    scheduler: str | None  # Dask scheduler of the shared pass (hsutils.analysis.cluster); None: a local cluster
    notebook_parameters: dict[str, dict[str, Any]]
    raw: dict[str, Any]
    missing_notebooks: list[str] = dataclasses.field(default_factory=list)

    @property
    def pref_code5(self) -> str:
        """The prefecture as a 5-digit 団体コード without check digit (石川県 → "17000")."""
        return f"{self.prefecture:02d}000"

    @property
    def run_dir(self) -> Path:
        return self.out_dir / self.run_name

    def notebook_path(self, spec: NotebookSpec) -> Path:
        p = Path(spec.file)
        return p if p.is_absolute() else self.notebook_dir / p

    def notebook_parameters_for(self, spec: NotebookSpec, **task_values) -> dict[str, Any]:
        """The parameters papermill passes to one run of `spec`: the run's common parameters, the
        notebook's own (`notebook_parameters`) and `task_values` (muni_code, cache_dir, ...),
        restricted to the names the notebook's parameters cell declares, so that a notebook never
        receives a parameter it would ignore (docs/design.md §9)."""
        extra = {**self.notebook_parameters.get(spec.id, {}), **self.notebook_parameters.get(spec.stem, {})}
        values = {**self.base_parameters(), **extra, **task_values}
        declared = declared_parameters(self.notebook_path(spec))
        return values if declared is None else {k: v for k, v in values.items() if k in declared}

    def base_parameters(self) -> dict[str, Any]:
        """Parameters common to every notebook of this run (JSON-serialisable). A notebook gets
        only those its parameters cell declares (`notebook_parameters_for`)."""
        return {
            "fiscal_year": max(self.fiscal_years),
            "fiscal_years": list(self.fiscal_years),
            "reference_area": self.reference_area,
            "standard_population": self.standard_population,
            "suppress_threshold": self.suppress_threshold,
            "run_name": self.run_name,
            "interactive": False,
        }


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ParameterError(f"パラメータファイル {path} が見つかりません。") from None
    except UnicodeDecodeError:
        raise ParameterError(f"パラメータファイル {path} を UTF-8 として読めません。UTF-8 で保存してください。") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"（{mark.line + 1}行目付近）" if mark is not None else ""
        raise ParameterError(f"パラメータファイル {path} の YAML の書き方に誤りがあります{where}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParameterError(f"パラメータファイル {path} は「項目名: 値」の形式で書いてください。")
    return data


def _absolutise(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Paths relative to the YAML file's folder → absolute (a run works from any current folder)."""
    out = dict(raw)
    for key in PATH_KEYS:
        value = out.get(key)
        if value in (None, ""):
            continue
        p = Path(str(value)).expanduser()
        out[key] = (p if p.is_absolute() else (base / p)).resolve()
    return out


def check_keys(data: dict[str, Any], path: Path, known: set[str]) -> None:
    """An unknown key is an error that names the nearest known key: a misspelled key
    (`municipalites`, `suppress_treshold`) must never silently leave the default in force."""
    import difflib

    unknown = [str(k) for k in data if str(k) not in known]
    if not unknown:
        return
    lines = []
    for key in unknown:
        near = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        lines.append(f"「{key}」" + (f"（「{near[0]}」の誤りではありませんか）" if near else ""))
    raise ParameterError(
        f"パラメータファイル {path} に使えない項目名があります: {'、'.join(lines)}。"
        f"使える項目名: {', '.join(sorted(known))}")


def load_raw(path: Path | None) -> dict[str, Any]:
    """The run YAML merged over defaults.yaml, with paths made absolute (not yet validated).

    Relative paths in defaults.yaml are relative to defaults.yaml's folder; those in the run file
    are relative to the run file's folder.
    """
    defaults = settings.defaults_file()  # missing defaults.yaml is an error, not silently {}
    merged = _absolutise(_read_yaml(defaults), defaults.parent)
    if path is not None:
        path = Path(path).resolve()
        run = _read_yaml(path)
        check_keys(run, path, set(merged) | set(EXTRA_RUN_KEYS))
        merged.update(_absolutise(run, path.parent))
    return merged


def _as_positive_int(raw: dict, key: str, label: str) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ParameterError(f"{label}（{key}）は正の整数で指定してください（指定値: {value!r}）。")
    return value


def _fiscal_years(value) -> list[int]:
    values = value if isinstance(value, list) else [value]
    years = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not FY_RANGE[0] <= v <= FY_RANGE[1]:
            raise ParameterError(
                f"年度（fiscal_years）の値 {v!r} が不正です。西暦の年度を整数で指定してください"
                f"（{FY_RANGE[0]}〜{FY_RANGE[1]}、例: 2024 = 令和6年度）。")
        years.append(v)
    if not years:
        raise ParameterError("年度（fiscal_years）を1つ以上指定してください（例: [2022, 2023, 2024]）。")
    return sorted(set(years))


def _scheduler(value) -> str | None:
    """The `scheduler:` key: the address of an existing Dask scheduler for the shared pass
    (same meaning as `--scheduler`; README「大きな県・クラスタで動かす」), e.g. tcp://10.0.0.5:8786."""
    if value in (None, ""):
        return None
    text = str(value).strip() if isinstance(value, str) else None
    if text and re.fullmatch(r"(tcp|tls|ws|wss|inproc)://\S+|[A-Za-z0-9._-]+:\d{1,5}", text):
        return text
    raise ParameterError(
        f"Dask のスケジューラ（scheduler）の指定 {value!r} が不正です。`dask scheduler` が表示するアドレスを"
        "「tcp://ホスト名:ポート」の形で書いてください（例: tcp://10.0.0.5:8786）。"
        "この機械だけで実行するときは scheduler の行を書かないでください。")


def _prefecture(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 47:
        raise ParameterError(f"都道府県コード（prefecture）は 1〜47 の整数で指定してください（指定値: {value!r}、例: 石川県 = 17）。")
    return value


def _read_master_csv(path: Path) -> dict[str, tuple[str, int | None]]:
    """code → (name, pref_code) from the data folder's 市町村マスタ, read by `hsutils.inputs.io.read_table`
    exactly as the batch's data load reads it (the same rows are kept)."""
    from hsutils.inputs import io as hio

    frame = hio.read_table(path, "municipalities").data
    codes = frame["muni_code"].astype(str).tolist()
    names = frame["name"].astype(str).tolist()
    prefs = frame["pref_code"].tolist()
    return {c: (n, None if p is None or p != p else int(p)) for c, n, p in zip(codes, names, prefs)}


def municipality_master(data_dir: Path, prefecture: int) -> dict[str, str]:
    """Municipalities of the prefecture, code → name: the data folder's 市町村マスタ when present
    (found by file name as `hsutils.inputs.io.load_dataset` finds it: municipalities.csv, 市町村マスタ.xlsx …),
    else the built-in master (hsutils.inputs.regions.load_master)."""
    from hsutils.inputs import io as hio
    from hsutils.inputs import regions

    path = hio.find_table_files(data_dir)[0].get("municipalities") if data_dir.is_dir() else None
    if path is not None:
        rows = _read_master_csv(path)
    else:
        frame = regions.load_master()
        rows = {str(c): (str(n), int(p)) for c, n, p in zip(frame["muni_code"], frame["name"], frame["pref_code"])}
    return {code: name for code, (name, pref) in rows.items() if pref is None or pref == prefecture}


def _municipalities(value, master: dict[str, str], data_dir: Path) -> dict[str, str]:
    if value in (None, "all", "全て", "すべて"):
        if not master:
            raise ParameterError(f"データフォルダ {data_dir} の市町村マスタに対象の都道府県の市町村がありません。")
        return dict(sorted(master.items()))
    from hsutils.core.codes import normalize_muni_code

    values = value if isinstance(value, list) else [value]
    chosen: dict[str, str] = {}
    for v in values:
        try:
            code = normalize_muni_code(v)
        except ValueError as e:
            raise ParameterError(f"市町村（municipalities）の指定 {v!r} が不正です: {e}") from None
        if code not in master:
            known = "、".join(f"{c} {n}" for c, n in list(sorted(master.items()))[:25])
            raise ParameterError(
                f"市町村コード {code} はデータの市町村マスタにありません（{data_dir}）。"
                f"指定できるコード: {known}{' …' if len(master) > 25 else ''}")
        chosen[code] = master[code]
    return chosen


def notebook_choices() -> str:
    """Japanese list of the registered notebooks, for messages and --help."""
    return "、".join(f"{s.id}（{s.stem}: {s.title}）" for s in NOTEBOOKS.values())


def resolve_notebook(value, base: Path | None = None) -> NotebookSpec:
    """A registry id ("02", "2", "02_large_insurer", "02_large_insurer.ipynb") or a path to an .ipynb.

    A notebook outside the registry is municipal unless its metadata says
    `{"hsutils": {"level": "pref"}}`.
    """
    text = str(value).strip()
    for spec in NOTEBOOKS.values():
        if text in (spec.id, spec.id.lstrip("0"), spec.stem, spec.file):
            return spec
    p = Path(text).expanduser()
    if p.suffix == ".ipynb":
        if not p.is_absolute():
            p = ((base or Path.cwd()) / p)
        p = p.resolve()
        if not p.exists():
            raise ParameterError(f"ノートブック {p} が見つかりません。")
        meta = json.loads(p.read_text(encoding="utf-8")).get("metadata", {}).get("hsutils", {})
        level = meta.get("level", "muni")
        return NotebookSpec(p.stem, str(p), level if level in ("pref", "muni", "both") else "muni",
                            meta.get("title", p.stem))
    raise ParameterError(f"ノートブック「{value}」は登録されていません。指定できるもの: {notebook_choices()}")


def _notebooks(value, base: Path) -> list[NotebookSpec]:
    if value in (None, "all", "全て", "すべて"):
        return list(NOTEBOOKS.values())
    values = value if isinstance(value, list) else [value]
    specs = [resolve_notebook(v, base) for v in values]
    return list({s.id: s for s in specs}.values())


def declared_parameters(path: Path) -> set[str] | None:
    """Names in the notebook's parameters cell (None when the file or the cell is missing)."""
    from hsutils.running import notebook_check

    path = Path(path)
    if not path.exists() or notebook_check.parameters_cell(path) is None:
        return None
    return set(notebook_check.parameter_names(path))


def _check_notebook_parameters(extra: dict[str, dict[str, Any]], notebook_dir: Path, base: Path) -> None:
    """Every key of `notebook_parameters` names a notebook and parameters its parameters cell has."""
    for key, values in extra.items():
        spec = resolve_notebook(key, base)
        p = Path(spec.file)
        declared = declared_parameters(p if p.is_absolute() else notebook_dir / p)
        if declared is None:
            continue
        unknown = [name for name in values if name not in declared]
        if unknown:
            raise ParameterError(
                f"notebook_parameters の「{key}」に、ノートブック {spec.file} にないパラメータ "
                f"{'、'.join(unknown)} があります。使えるパラメータ: {'、'.join(sorted(declared))}")


def _existing_path_or_value(value, base: Path):
    """A per-notebook parameter naming a file or folder relative to the YAML (e.g. a targets YAML,
    the support-record folder `support_records_demo`) becomes absolute, because notebooks run with
    their output folder as working directory. A bare word becomes a path only when a folder of that
    name sits beside the YAML (a file needs a suffix or a slash, so that ordinary values stay values)."""
    if isinstance(value, str) and value and not Path(value).is_absolute():
        candidate = base / value
        if (("/" in value or "." in value) and candidate.exists()) or candidate.is_dir():
            return str(candidate.resolve())
    return value


def validate(raw: dict[str, Any], source: Path | None = None, check_notebook_files: bool = True) -> RunParams:
    """Check every value and return a `RunParams`; raises ParameterError (Japanese) on the first problem."""
    source = Path(source).resolve() if source else settings.defaults_file()
    base = source.parent
    prefecture = _prefecture(raw.get("prefecture"))
    fiscal_years = _fiscal_years(raw.get("fiscal_years"))
    threshold = _as_positive_int(raw, "suppress_threshold", "秘匿の閾値")
    timeout = _as_positive_int(raw, "timeout_seconds", "ノートブック1本あたりの制限時間（秒）")
    start_timeout = _as_positive_int(raw, "kernel_start_timeout", "カーネル起動の制限時間（秒）")

    data_dir = raw.get("data_dir")
    if not data_dir or not Path(data_dir).is_dir():
        raise ParameterError(
            f"データフォルダ {data_dir} がありません。デモデータで試す場合は先に `hsutils demo` "
            "を実行してください（既定の出力先は data/demo）。実データの場合は data_dir にフォルダを指定してください。")
    data_dir = Path(data_dir)
    column_map = raw.get("column_map") or None
    if column_map is not None and not Path(column_map).is_file():
        raise ParameterError(f"列名対応表（column_map）{column_map} が見つかりません。")

    reference_area = areas.check_reference_area(raw.get("reference_area", "pref"))
    standard_population = areas.check_standard_population(raw.get("standard_population", "H27"))
    run_name = str(raw.get("run_name") or "").strip()
    if not run_name or any(ch in run_name for ch in '/\\:*?"<>|') or run_name.startswith("."):
        raise ParameterError(f"実行名（run_name）「{run_name}」はフォルダ名に使えません（英数字などで指定してください）。")
    if raw.get("interactive"):
        raise ParameterError("一括実行では interactive を true にできません（ウィジェットは JupyterLab で手動実行するときだけ使えます）。")

    notebook_dir = Path(raw.get("notebook_dir") or settings.notebook_dir())
    notebooks = _notebooks(raw.get("notebooks", "all"), base)
    missing: list[str] = []
    if check_notebook_files:
        exists = {s.id: (Path(s.file) if Path(s.file).is_absolute() else notebook_dir / s.file).exists()
                  for s in notebooks}
        missing = [s.file for s in notebooks if not exists[s.id]]
        if raw.get("notebooks", "all") in (None, "all", "全て", "すべて"):
            notebooks = [s for s in notebooks if exists[s.id]]  # "all" = every notebook installed
            if not notebooks:
                raise ParameterError(f"ノートブックのフォルダ {notebook_dir} に実行できるノートブックがありません。")
        elif missing:
            raise ParameterError(f"ノートブック {notebook_dir / missing[0]} が見つかりません（notebook_dir: {notebook_dir}）。")

    master = municipality_master(data_dir, prefecture)
    municipalities = _municipalities(raw.get("municipalities", "all"), master, data_dir)

    extra = raw.get("notebook_parameters") or {}
    if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
        raise ParameterError("notebook_parameters は「ノートブックID: {パラメータ名: 値}」の形式で指定してください。")
    extra = {str(k): {name: _existing_path_or_value(v, base) for name, v in values.items()}
             for k, values in extra.items()}
    _check_notebook_parameters(extra, notebook_dir, base)
    return RunParams(
        source=source, prefecture=prefecture, pref_name=PREFECTURE_NAMES[prefecture - 1],
        fiscal_years=fiscal_years, municipalities=municipalities, notebooks=notebooks,
        notebook_dir=notebook_dir, data_dir=data_dir,
        column_map=Path(column_map) if column_map else None, reference_area=reference_area,
        standard_population=standard_population, suppress_threshold=threshold,
        out_dir=settings.out_dir(raw.get("out_dir")), run_name=run_name,
        timeout_seconds=timeout, kernel_start_timeout=start_timeout,
        kernel_name=str(raw.get("kernel_name") or "python3"), interactive=False,
        prepare_function=str(raw.get("prepare_function") or "hsutils.analysis.pipeline:prepare_cache"),
        scheduler=_scheduler(raw.get("scheduler")),
        notebook_parameters=extra, raw=raw, missing_notebooks=missing)


def load_params(path: Path | None, out: Path | None = None, check_notebook_files: bool = True) -> RunParams:
    """Load a run YAML over defaults.yaml, apply `--out`, validate. `path=None` → defaults only."""
    raw = load_raw(path)
    if out is not None:
        raw["out_dir"] = Path(out).resolve()
    return validate(raw, path, check_notebook_files=check_notebook_files)

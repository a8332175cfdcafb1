"""What every notebook does first and last: find the data, load the shared cache, save outputs.

A notebook calls `start(...)` with its parameters and gets a `NotebookContext`: the prepared
data (hsutils.pipeline), the municipality, the output folder of DESIGN §7, and helpers that
save figures and committee tables (small counts suppressed, DESIGN §6) or confidential
person-level lists. `finish()` writes the notebook's single xlsx.

Defaults make a notebook opened by hand in JupyterLab work: with no `data_dir`, the environment
variable HSUTILS_DATA_DIR or `<repo>/data/demo` is used, and the demo data is generated there
when it does not exist yet (DESIGN §9).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hsutils import pipeline, privacy, report

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_SOURCE = "KDB形式データ（架空のデモデータ）"


def _resolve_dirs(data_dir, cache_dir, out_dir) -> tuple[Path, Path, Path]:
    data = Path(data_dir or os.environ.get("HSUTILS_DATA_DIR") or REPO_ROOT / "data" / "demo")
    cache = Path(cache_dir or os.environ.get("HSUTILS_CACHE_DIR") or data.parent / (data.name + "_cache"))
    out = Path(out_dir or os.environ.get("HSUTILS_OUT_DIR") or REPO_ROOT / "outputs" / "interactive")
    return data.resolve(), cache.resolve(), out.resolve()


@dataclass
class NotebookContext:
    notebook: str
    muni_code: str
    muni_name: str
    fiscal_year: int
    prepared: pipeline.Prepared
    out_dir: Path
    suppress_threshold: int = privacy.DEFAULT_THRESHOLD
    source: str = DEMO_SOURCE
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    confidential: dict[str, pd.DataFrame] = field(default_factory=dict)
    plan: privacy.SuppressionPlan | None = None

    def __post_init__(self):
        if self.plan is None:  # one suppression plan for every committee table of the report
            self.plan = privacy.SuppressionPlan(self.suppress_threshold)

    @property
    def is_prefecture(self) -> bool:
        return len(self.muni_code) == 2

    def footer(self, population: str, conditions: str | None = None, fy=None) -> str:
        """Footer line of every chart: source, fiscal year, population, conditions (DESIGN §1)."""
        from hsutils import plots

        return plots.footer(self.source, self.fiscal_year if fy is None else fy, population, conditions)

    def save_figure(self, fig, name: str):
        """PNG (300 dpi) + PDF into figures/ (DESIGN §7); returns the figure so it displays."""
        report.save_figure(fig, self.out_dir, name)
        return fig

    def save_table(self, df: pd.DataFrame, name: str, count_cols=None, derived_cols=None,
                   relations=()) -> pd.DataFrame:
        """Committee table: counts 1…threshold−1, what is derived from them and the
        complementary cells needed so that no hidden count can be recovered by subtraction from
        any total of this or an earlier table of the report (`relations`: privacy.Margin,
        ColumnMargin, Partition, Link) are replaced by the suppression mark (DESIGN §6,
        `privacy.SuppressionPlan`) before writing CSV (UTF-8-BOM); also collected for the xlsx.
        A table passed without `count_cols` is written as given (already suppressed, or without
        counts); its marks still count as hidden cells for the relations of later tables.
        Returns the suppressed table (what may be shown)."""
        shown = df
        if count_cols or relations:
            self.plan.add_table(name, df, count_cols or [], derived_cols=derived_cols, relations=relations)
            self.plan.solve()
            if count_cols:
                shown = self.plan.shown(name)
            self.plan.publish(name)
        report.save_table(shown, self.out_dir, name)
        self.tables[name] = shown
        return shown

    def masked(self, name: str) -> pd.DataFrame:
        """A saved committee table as numbers for its chart: every cell the report's suppression
        plan hides is NaN (charts treat a NaN count as suppressed), so chart and table hide the
        same figures."""
        return self.plan.masked(name)

    def save_confidential(self, df: pd.DataFrame, name: str) -> Path:
        """Person-level list: only under confidential/ (CSV + xlsx), never shown in the report."""
        folder = self.out_dir / "confidential"
        path = report.atomic_write_text(folder / f"{report.safe_name(name)}.csv",
                                        df.to_csv(index=False, lineterminator="\r\n"), encoding="utf-8-sig")
        report.write_xlsx({name: df}, folder / f"{report.safe_name(name)}.xlsx")
        self.confidential[name] = df
        return path

    def finish(self) -> Path | None:
        """Write the notebook's one xlsx with every committee table (DESIGN §7)."""
        if not self.tables:
            return None
        path = self.out_dir / "tables" / f"{report.safe_name(self.notebook)}.xlsx"
        report.write_xlsx(self.tables, path)
        return path


def start(notebook: str, muni_code: str | None = None, fiscal_year: int | None = None, *,
          data_dir=None, cache_dir=None, out_dir=None, suppress_threshold: int = privacy.DEFAULT_THRESHOLD,
          with_tables: bool = False, run_name: str = "interactive", demo_scale: float = 0.1) -> NotebookContext:
    """Load the shared cache (building it when missing) and make the output folder.

    `out_dir`: when given by the batch, outputs go exactly there; otherwise into
    `<repo>/outputs/interactive/<muni_code>_<name>/<notebook>/`.
    """
    cache_given = bool(cache_dir or os.environ.get("HSUTILS_CACHE_DIR"))  # a batch (or test) built it
    data, cache, out_root = _resolve_dirs(data_dir, cache_dir, None)
    if not (cache / "meta.json").exists() and not data.exists():
        from hsutils import synth

        print(f"データフォルダ {data} がないため、デモデータ（架空）を作成します。")
        synth.write_demo(data, scale=demo_scale)
    if not (cache / "meta.json").exists() or (not cache_given and data.exists()):
        # opened by hand: rebuild when the input files changed (content hash; a no-op otherwise)
        pipeline.prepare_cache(data, cache)
    prepared = pipeline.load_prepared(cache, with_tables=with_tables)
    fys = prepared.fiscal_years
    fy = int(fiscal_year) if fiscal_year else fys[-1]
    if fy not in fys:
        from hsutils.errors import ParameterError

        raise ParameterError(f"年度 {fy} のデータがありません（データにある年度: {fys}）")
    master = prepared.municipalities
    if muni_code is None:
        muni_code = str(master["pref_code"].iloc[0]).zfill(2)
    muni_code = str(muni_code)
    if len(muni_code) == 5 and muni_code.endswith("000"):  # 都道府県 as 5-digit code (e.g. 17000)
        muni_code = muni_code[:2]
    if len(muni_code) == 2:
        name = str(master.get("pref_name", pd.Series([muni_code])).iloc[0])
    else:
        if muni_code not in set(master["muni_code"]):
            from hsutils.errors import ParameterError

            raise ParameterError(f"市町村コード {muni_code} はデータの市町村マスタにありません"
                                 f"（例: {', '.join(master['muni_code'].head(3))}）")
        name = prepared.muni_name(muni_code)
    if out_dir:
        folder = Path(out_dir)
        for sub in report.SUBFOLDERS:
            (folder / sub).mkdir(parents=True, exist_ok=True)
    else:
        env_out = os.environ.get("HSUTILS_OUT_DIR")
        folder = report.output_dir(Path(env_out) if env_out else out_root.parent, run_name, muni_code, name, notebook)
    return NotebookContext(notebook=notebook, muni_code=muni_code, muni_name=name, fiscal_year=fy,
                           prepared=prepared, out_dir=folder, suppress_threshold=suppress_threshold)

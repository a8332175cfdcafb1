"""What every notebook does first and last: find the data, load the shared cache, save outputs.

A notebook calls `start(...)` with its parameters and gets a `NotebookContext`: the prepared
data (hsutils.analysis.pipeline), the municipality, the output folder of docs/design.md §7, and helpers that
save figures and committee tables (small counts suppressed, docs/design.md §6) or confidential
person-level lists. `finish()` writes the notebook's single xlsx.

Defaults make a notebook opened by hand in JupyterLab work (folders from `hsutils.core.settings`): with
no `data_dir`, the environment variable HSUTILS_DATA_DIR or `<repo>/data/demo` is used, and the demo
data is generated there when it does not exist yet (docs/design.md §9); the shared cache of person-level
rows is kept in `<outputs>/<run_name>/confidential/cache` (docs/design.md §6).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hsutils.core import settings
from hsutils.analysis import areas, pipeline
from hsutils.publish import privacy, report

#: What the 出典 of a chart footer names, per input format (`source_label`).
SOURCE_XML = "特定健診XML"
SOURCE_GUIDANCE_XML = "特定保健指導XML"
SOURCE_BOTH_XML = "特定健診・特定保健指導XML"
SOURCE_UKE = "レセプト電算（UKE）"
SOURCE_BY_SUFFIX = {".csv": "KDB形式CSV", ".txt": "KDB形式CSV", ".tsv": "KDB形式CSV", ".xlsx": "KDB形式Excel",
                    ".xls": "KDB形式Excel", ".parquet": "Parquet"}
DEMO_NOTE = "（架空のデモデータ）"
UNKNOWN_SOURCE = "入力データ"
#: before a cache says what it was built from
DEMO_SOURCE = UNKNOWN_SOURCE + DEMO_NOTE


def source_label(import_summary: pd.DataFrame | None, data_dir=None) -> str:
    """The 出典 of every chart footer, from what the cache was actually built from: the import
    summary (`hsutils.inputs.io`, one row per table read: 特定健診 XML archives, UKE files, CSV/Excel/Parquet
    templates) and the data folder recorded in the cache's meta.json. 健診 first, then レセプト,
    then the other tables, each format once; 「（架空のデモデータ）」 when the folder is the demo's
    (`hsutils.core.settings.demo_data_dir`), e.g. 「特定健診・特定保健指導XML・レセプト電算（UKE）・KDB形式CSV（架空のデモデータ）」 (hg08 read from the same archives is named with the 健診, not 「入力データ」)."""
    from hsutils.inputs import tokutei_xml

    labels: list[str] = []
    if import_summary is not None and len(import_summary):
        order = {"kenshin": 0, "guidance": 0, "uke": 1, "claims_monthly": 1}
        rows = sorted(import_summary[["table", "file"]].itertuples(index=False), key=lambda r: order.get(r[0], 2))
        has_uke = any(t == "uke" for t, _ in rows)
        for table, file in rows:
            if table == "uke":
                label = SOURCE_UKE
            elif table == "kenshin" and str(file) == tokutei_xml.LABEL:
                label = SOURCE_XML
            elif table == "guidance" and str(file) == tokutei_xml.LABEL_GUIDANCE:
                label = SOURCE_GUIDANCE_XML  # hg08 documents of the same archives
            elif table == "claims_monthly" and has_uke:
                continue  # replaced by the UKE receipts (hsutils.inputs.io)
            else:
                label = SOURCE_BY_SUFFIX.get(Path(str(file)).suffix.lower(), UNKNOWN_SOURCE)
            if label not in labels:
                labels.append(label)
    if SOURCE_XML in labels and SOURCE_GUIDANCE_XML in labels:  # one source, said once
        labels[labels.index(SOURCE_XML)] = SOURCE_BOTH_XML
        labels.remove(SOURCE_GUIDANCE_XML)
    text = "・".join(labels) or UNKNOWN_SOURCE
    demo = data_dir is not None and Path(data_dir).resolve() == settings.demo_data_dir()
    return text + (DEMO_NOTE if demo else "")


class _FigureWriter:
    """One background thread that encodes and writes a notebook's PNG files in order, and
    remembers each job so that `wait` can raise what failed. At most `MAX_PENDING` figures wait
    (each holds its 300-dpi pixels, about 20 MB): the notebook waits for the oldest beyond that.

    A notebook that never calls `ctx.finish()` still gets its figures: the writer is flushed when
    the interpreter (the kernel) exits (`_flush_at_exit`, registered with `atexit`), and what
    failed there is printed, since no cell is left to raise it in (docs/design.md §7)."""

    MAX_PENDING = 4

    def __init__(self):
        import atexit
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hsutils-figures")
        self.jobs = []
        atexit.register(self._flush_at_exit)

    def _flush_at_exit(self) -> None:
        """Wait for the figures still queued at interpreter exit; report (not raise) what failed."""
        import sys

        self.pool.shutdown(wait=True)
        failed = [job.exception() for job in self.jobs if job.exception() is not None]
        self.jobs = []
        for error in failed:
            print(f"図の書き出しに失敗しました（ノートブックの終了時）: {error}", file=sys.stderr, flush=True)

    def submit(self, fn, *args):
        pending = [job for job in self.jobs if not job.done()]
        if len(pending) >= self.MAX_PENDING:
            pending[0].exception()  # waits; an error is raised by `wait`
        job = self.pool.submit(fn, *args)
        self.jobs.append(job)
        return job

    def wait(self) -> None:
        import atexit

        atexit.unregister(self._flush_at_exit)  # waited for here; nothing left for the exit
        self.pool.shutdown(wait=True)
        for job in self.jobs:
            job.result()


@dataclass
class NotebookContext:
    notebook: str
    muni_code: str
    muni_name: str
    fiscal_year: int
    prepared: pipeline.Prepared
    out_dir: Path
    area: areas.Area
    reference: areas.ReferenceResolution
    standard_population: areas.StandardPopulation
    suppress_threshold: int = privacy.DEFAULT_THRESHOLD
    source: str = DEMO_SOURCE
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    confidential: dict[str, pd.DataFrame] = field(default_factory=dict)
    plan: privacy.SuppressionPlan | None = None
    _writer: _FigureWriter | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.plan is None:  # one suppression plan for every committee table of the report
            self.plan = privacy.SuppressionPlan(self.suppress_threshold)

    def location(self, *parts) -> str:
        """Where an output is, as a report may print it: the notebook's final output folder relative
        to the outputs' parent (`hsutils.core.settings.shown_out_dir`), e.g.
        ``outputs/demo/17201_金沢市/04_nephropathy/confidential/referral_list.csv``. Never the
        machine's absolute path nor the batch's staging folder."""
        return "/".join([settings.shown_out_dir(self.out_dir), *(str(part) for part in parts)])

    def data_folder(self, explicit=None) -> Path:
        """The input data folder: `explicit` (the notebook's `data_dir` parameter), else the folder
        the shared cache was built from (its meta.json), else `settings.data_dir`. A batch passes
        a notebook only `cache_dir`, not `data_dir`, so a notebook that reads a file of the data
        folder besides the cache (07's 医薬品マスター) asks here, not `settings.data_dir(data_dir)`,
        which would fall back to the demo folder."""
        return settings.data_dir(explicit or self.prepared.meta.get("data_dir"))

    def footer(self, population: str, conditions: str | None = None, fy=None, *, lookback=()) -> str:
        """Footer line of every chart: source, fiscal year, population, conditions (docs/design.md §1).
        `lookback`: the chart's indicator ids; the claims look-back of those that depend on one is
        appended to the conditions (docs/hotei.md §7.5, `indicators.lookback_note`)."""
        from hsutils.analysis import indicators
        from hsutils.publish import plots

        history = (getattr(self.prepared, "meta", None) or {}).get("claims_history")
        conditions = indicators.footer_conditions(conditions, lookback, history)
        return plots.footer(self.source, self.fiscal_year if fy is None else fy, population, conditions)

    def save_figure(self, fig, name: str):
        """PNG (300 dpi) + PDF into figures/ (PNG only in a batch run: `settings.figure_formats`;
        docs/design.md §7); returns the figure so it displays. The PNG is drawn now and encoded
        and written by the context's writer thread while the notebook goes on (`report.save_figure`
        `writer=`); `finish` waits for it and raises what failed there."""
        if self._writer is None:
            self._writer = _FigureWriter()
        report.save_figure(fig, self.out_dir, name, writer=self._writer)
        return fig

    def wait_for_figures(self) -> None:
        """Wait until every figure handed to the writer is on disk; raise the first error."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.wait()

    def save_table(self, df: pd.DataFrame, name: str, count_cols=None, derived_cols=None,
                   relations=()) -> pd.DataFrame:
        """Committee table: counts 1…threshold−1, what is derived from them and the
        complementary cells needed so that no hidden count can be recovered by subtraction from
        any total of this or an earlier table of the report (`relations`: privacy.Margin,
        ColumnMargin, Partition, Link) are replaced by the suppression mark (docs/design.md §6,
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
        """Write the notebook's one xlsx with every committee table (docs/design.md §7), after
        the figures still being written (`wait_for_figures`)."""
        self.wait_for_figures()
        if not self.tables:
            return None
        path = self.out_dir / "tables" / f"{report.safe_name(self.notebook)}.xlsx"
        report.write_xlsx(self.tables, path)
        return path


class FirstRun:
    """What a notebook prints while it prepares the demo data and the shared cache (only the first
    time, or after the input files changed): what is prepared, that later runs are fast, roughly
    how long, and a progress bar over the stages (`pipeline.PREPARE_STAGES`). Prints nothing when
    everything is ready."""

    #: Measured on the 2-core development machine: demo generation at scale 0.1 in the real formats
    #: (特定健診 XML + UKE) plus the cache of that data took about 61 CPU-s (1.75 GB peak) — 1–2
    #: minutes; the next start under a second. Real data take longer with their size.
    SECONDS_HINT = "デモデータ（1/10規模、特定健診XML・UKEの読み込みを含む）で1〜2分ほど、実データでは数分〜数十分"

    def __init__(self, data_label: str):
        self.data_label = data_label
        self.bar = None
        self.steps: list[str] = []
        self.started = 0  # steps begun; each new one completes the previous
        self.announced = False

    def __enter__(self) -> "FirstRun":
        return self

    def _announce(self) -> None:
        if self.announced:
            return
        self.announced = True
        print("【初回のみ】分析の準備をしています。入力データを読み込み、検査して、共有キャッシュ"
              "（対象者×年度の表）を作ります。\n"
              f"  データ: {self.data_label}\n"
              f"  時間の目安: {self.SECONDS_HINT}。次回からはキャッシュを使うので数秒で始まります"
              "（入力ファイルを変えたときだけ作り直します）。", flush=True)

    def _open(self) -> None:
        self._announce()
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(self.steps) + len(pipeline.PREPARE_STAGES), desc="準備", unit="段階",
                            bar_format="{desc}{n}/{total} 段階 |{bar}| {elapsed}")

    def demo(self, scale: float) -> None:
        """Announce the generated demo data and how it differs from `make demo` (scale 1)."""
        self._announce()
        size = "`make demo` と同じ規模" if scale == 1 else (
            f"`make demo` の {scale:g} 倍の規模（人数が約{scale:.0%}）のため、人数や率は `make demo` の報告書と"
            "一致せず、秘匿（「‐」）が多くなります。同じ規模で見るには、先にターミナルで `make demo` を"
            "実行してください")
        print(f"データフォルダ {self.data_label} がないため、架空のデモデータを作成します（{size}）。", flush=True)
        self.steps.append("デモデータの作成")
        self._open()
        self.bar.set_description("デモデータの作成", refresh=True)
        self.started += 1

    def stage(self, name: str) -> None:
        self._open()
        if self.started:
            self.bar.update(1)
        self.started += 1
        self.bar.set_description(name)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.bar is not None:
            if exc_type is None:
                self.bar.update(self.bar.total - self.bar.n)
                self.bar.set_description("準備完了")
            self.bar.close()


def show_saved_figures() -> bool:
    """In an IPython kernel with the inline backend's PNG display (`%matplotlib inline`), show a
    figure that `NotebookContext.save_figure` has just written from the image kept then
    (`report.display_png`) instead of drawing it once more (issue 18 §1); any other figure, or one
    changed since, is drawn by the inline backend as before. Returns whether it is in place.
    Called by `start`; a kernel serves one run (docs/design.md §8.5), so nothing outlives the run."""
    import base64
    import functools

    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
    except ImportError:
        return False
    from matplotlib.figure import Figure

    shell = get_ipython()
    formatter = getattr(getattr(shell, "display_formatter", None), "formatters", {}).get("image/png")
    if formatter is None:
        return False
    try:
        inline = formatter.lookup_by_type(Figure)
    except KeyError:
        return False
    if getattr(inline, "hsutils_saved", False):
        return True
    # only IPython's plain PNG display with its default box (not retina, not other options)
    if not (isinstance(inline, functools.partial) and inline.func is print_figure
            and inline.keywords == {"fmt": "png", "base64": True, "bbox_inches": "tight"}):
        return False

    def show(fig):
        kept = report.display_png(fig)
        return base64.b64encode(kept).decode("ascii") if kept is not None else inline(fig)

    show.hsutils_saved = True
    formatter.for_type(Figure, show)
    return True


def use_system_allocator() -> None:
    """Let Arrow allocate with the C library's malloc, as pandas and NumPy do (called by `start`; a kernel
    serves one run, docs/design.md §8.5). Arrow's own allocator (mimalloc) keeps the pages of the columns a
    run has converted to pandas and of its intermediate results, which the run's NumPy arrays then cannot
    reuse: 金沢市's notebook 04 at scale 4 peaked at 0.85 GB with it, 0.69 GB without (issue 17)."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


def start(notebook: str, muni_code: str | None = None, fiscal_year: int | None = None, *,
          data_dir=None, cache_dir=None, out_dir=None, suppress_threshold: int = privacy.DEFAULT_THRESHOLD,
          with_tables: bool = False, run_name: str = "interactive", demo_scale: float = 0.1,
          muni_name: str | None = None, reference_area: str = "pref",
          standard_population: str = "H27", person_rows: str = "area") -> NotebookContext:
    """Load the shared cache (building it when missing) and make the output folder.

    `muni_code` is any code form of `hsutils.analysis.areas` (a prefecture as 17 / "17000", a municipality
    as 5 or 6 digits); `ctx.area`, `ctx.reference` (for `reference_area`, with its note when the
    requested reference is not in the data) and `ctx.standard_population` are resolved here once.
    `muni_name` replaces the master's name in titles when given.

    `person_rows`: whose person-level rows `ctx.prepared` holds: "area" (default) the area's own
    municipalities (a municipal run reads only its partitions, docs/design.md §8.1), "reference"
    also those of the reference area (a notebook that recounts the reference from person rows),
    "all" every municipality (a notebook that would compare all municipalities from person rows).
    No notebook uses "reference" or "all" any more: 03, 06, 07 and 08 sum or count the other
    municipalities once per cache instead (`pipeline.derived_table`); the options are kept.

    `out_dir`: when given by the batch, outputs go exactly there; otherwise into
    `<outputs>/<run_name>/<muni_code>_<name>/<notebook>/` (`hsutils.core.settings.out_dir`).
    """
    show_saved_figures()
    use_system_allocator()
    cache_given = bool(cache_dir or settings.env_path(settings.ENV_CACHE_DIR))  # a batch (or test) built it
    data = settings.data_dir(data_dir)
    cache = settings.cache_dir(cache_dir, run_name=run_name)
    with FirstRun(settings.shown_path(data)) as first:
        if not (cache / "meta.json").exists() and not data.exists():
            from hsutils.demo import synth

            first.demo(demo_scale)
            synth.write_demo(data, scale=demo_scale)
        if not (cache / "meta.json").exists() or (not cache_given and data.exists()):
            # opened by hand: rebuild when the input files changed (content hash; a no-op otherwise)
            pipeline.prepare_cache(data, cache, progress=first.stage)
    master, district_master = pipeline.load_area_tables(cache)
    area = areas.resolve_area(str(master["pref_code"].iloc[0]).zfill(2) if muni_code is None else muni_code,
                              master, district_master)
    reference = areas.resolve_reference(area, reference_area, master)
    # person-level rows: only the area's municipalities (docs/design.md §8.1), or also the reference's
    munis = area.member_munis(master)
    if person_rows == "reference":
        ref = reference.member_munis(master)
        munis = None if munis is None or ref is None else sorted(set(munis) | set(ref))
    elif person_rows == "all":
        munis = None
    elif person_rows != "area":
        raise ValueError(f"person_rows must be 'area', 'reference' or 'all', not {person_rows!r}")
    prepared = pipeline.load_prepared(cache, with_tables=with_tables, munis=munis)
    fys = prepared.fiscal_years
    fy = int(fiscal_year) if fiscal_year else fys[-1]
    if fy not in fys:
        from hsutils.core.errors import ParameterError

        raise ParameterError(f"年度 {fy} のデータがありません（データにある年度: {fys}）")
    std = areas.standard_population(standard_population, prepared.strata, fy)
    muni_code, name = area.code, str(muni_name or area.display_name)
    if out_dir:
        folder = Path(out_dir)
        for sub in report.SUBFOLDERS:
            (folder / sub).mkdir(parents=True, exist_ok=True)
    else:
        folder = report.output_dir(settings.out_dir(), run_name, muni_code, name, notebook)
    return NotebookContext(notebook=notebook, muni_code=muni_code, muni_name=name, fiscal_year=fy,
                           prepared=prepared, out_dir=folder, area=area, reference=reference,
                           standard_population=std, suppress_threshold=suppress_threshold,
                           source=source_label(prepared.import_summary, prepared.meta.get("data_dir")))

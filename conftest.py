"""Test-session setup: a small demo dataset for the notebook runs (nbval) and library tests.

The data is generated once per test session in the formats users hold and read back through the
same import path as a user's files (hsutils.demo.synth writes 特定健診 XML archives, UKE claims files
and cp932 CSVs for the other tables; hsutils.inputs.io reads them). Kernels started by nbval
inherit the HSUTILS_* environment variables, so the notebooks use this small dataset.
"""
import os
import tempfile
from pathlib import Path

TEST_SCALE = 0.03
XML_SLICE_DOCS = 500  # the demo's ≈ 2,500 健診 documents: five slices (tests/test_partition_import.py)


def pytest_configure(config):
    if os.environ.get("HSUTILS_TEST_DATA_READY"):
        return
    root = Path(tempfile.mkdtemp(prefix="hsutils-test-"))
    from hsutils.core import settings
    from hsutils.analysis import pipeline
    from hsutils.demo import synth

    # the person-level cache lives under confidential/, as in a real run (hsutils.core.settings)
    data, out = root / "demo", root / "outputs"
    cache = settings.cache_dir(run_name=settings.INTERACTIVE_RUN, out=out)

    synth.write_demo(data, scale=TEST_SCALE, seed=2024, encoding="cp932")
    # the 健診 XML is validated and handed to the partitions in slices of XML_SLICE_DOCS documents
    # (a real prefecture's size has many slices; the default would be one slice here), so that the
    # session's cache exercises the sliced path and tests compare it with the whole-table path
    from hsutils.inputs import tokutei_xml

    default, tokutei_xml.VALIDATE_DOCS = tokutei_xml.VALIDATE_DOCS, XML_SLICE_DOCS
    try:
        pipeline.prepare_cache(data, cache)
    finally:
        tokutei_xml.VALIDATE_DOCS = default
    os.environ.update({"HSUTILS_DATA_DIR": str(data), "HSUTILS_CACHE_DIR": str(cache),
                       "HSUTILS_OUT_DIR": str(out), "HSUTILS_TEST_DATA_READY": "1",
                       "MPLBACKEND": "Agg"})


import pytest  # noqa: E402

# --- parallel test runs (pytest-xdist; `make test` passes `-n auto`) --------------------------------
# The demo above is built once, in the controlling process: xdist starts its workers after
# pytest_configure, they inherit HSUTILS_* and HSUTILS_TEST_DATA_READY and skip the build.
MAX_TEST_WORKERS = 4


@pytest.hookimpl(optionalhook=True)  # optional: plain `pytest` works without pytest-xdist
def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per usable CPU, at most MAX_TEST_WORKERS (each worker holds its own
    session fixtures; more workers than that only add memory and start-up time)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_TEST_WORKERS))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """The cells of one notebook share one kernel (nbval): they are one unit of work, sent to one
    worker. So are the tests of a file that defines a module- or session-scoped fixture (a demo
    import, a real batch, a gallery build): split over two workers, each worker would build the
    fixture again. Every other test is its own unit, so the slow ones spread over the workers.
    Units go out largest first (xdist's loadscope reordering), i.e. the notebooks start first.

    (xdist's own `--dist loadgroup` does not work with pytest 9: it renames `item._nodeid`, which
    pytest 9 no longer reads.)"""
    if config.getvalue("dist") == "each":
        return None
    from functools import lru_cache

    from xdist.scheduler import LoadScopeScheduling

    @lru_cache(maxsize=None)
    def shares_fixtures(path: str) -> bool:
        try:
            text = (config.rootpath / path).read_text(encoding="utf-8")
        except OSError:
            return False
        return 'scope="module"' in text or 'scope="session"' in text

    class NotebookScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path.endswith(".ipynb") or shares_fixtures(path) else nodeid

    return NotebookScheduling(config, log)


@pytest.fixture(scope="session")
def demo_data_dir() -> Path:
    """Folder of the small cp932 demo dataset of this test session."""
    return Path(os.environ["HSUTILS_DATA_DIR"])


@pytest.fixture(scope="session")
def prepared():
    """The shared cache (person_year, strata, master, raw claims/kaigo/questionnaire) of the demo data."""
    from hsutils.analysis import pipeline

    return pipeline.load_prepared(Path(os.environ["HSUTILS_CACHE_DIR"]), with_tables=True)


def copy_session_cache(data_dir, cache_dir, column_map=None):
    """A batch's `prepare=` for the session's demo data: copies the session's shared cache into the
    batch's cache folder instead of running the shared pass again (≈ 60–100 s per batch)."""
    import shutil

    shutil.copytree(os.environ["HSUTILS_CACHE_DIR"], cache_dir, dirs_exist_ok=True)


@pytest.fixture(scope="session")
def session_cache_copier():
    """`copy_session_cache`, for tests whose real batch reads the session's demo data."""
    return copy_session_cache

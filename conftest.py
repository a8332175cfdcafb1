"""Test-session setup: a small demo dataset for the notebook runs (nbval) and library tests.

The data is generated once per test session in the formats users hold and read back through the
same import path as a user's files (hsutils.synth writes 特定健診 XML archives, UKE claims files
and cp932 CSVs for the other tables; hsutils.io reads them). Kernels started by nbval
inherit the HSUTILS_* environment variables, so the notebooks use this small dataset.
"""
import os
import tempfile
from pathlib import Path

TEST_SCALE = 0.03


def pytest_configure(config):
    if os.environ.get("HSUTILS_TEST_DATA_READY"):
        return
    root = Path(tempfile.mkdtemp(prefix="hsutils-test-"))
    from hsutils import pipeline, settings, synth

    # the person-level cache lives under confidential/, as in a real run (hsutils.settings)
    data, out = root / "demo", root / "outputs"
    cache = settings.cache_dir(run_name=settings.INTERACTIVE_RUN, out=out)

    synth.write_demo(data, scale=TEST_SCALE, seed=2024, encoding="cp932")
    pipeline.prepare_cache(data, cache)
    os.environ.update({"HSUTILS_DATA_DIR": str(data), "HSUTILS_CACHE_DIR": str(cache),
                       "HSUTILS_OUT_DIR": str(out), "HSUTILS_TEST_DATA_READY": "1",
                       "MPLBACKEND": "Agg"})


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def demo_data_dir() -> Path:
    """Folder of the small cp932 demo dataset of this test session."""
    return Path(os.environ["HSUTILS_DATA_DIR"])


@pytest.fixture(scope="session")
def prepared():
    """The shared cache (person_year, strata, master, raw claims/kaigo/questionnaire) of the demo data."""
    from hsutils import pipeline

    return pipeline.load_prepared(Path(os.environ["HSUTILS_CACHE_DIR"]), with_tables=True)

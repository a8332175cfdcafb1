"""The public API of docs/design.md §4 keeps its names after the subpackages (hsutils/__init__.py):
`hsutils.clinical` and `hsutils.stats` import the same objects, however they are asked for; the old flat
names of the other modules give the same module with a FutureWarning naming the new place."""
from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

import hsutils
from hsutils import stats
from hsutils.rules import clinical as rules_clinical

PUBLIC = {
    "clinical": ("egfr", "ckd_g_stage", "ckd_a_stage", "metabolic_status", "guidance_level"),
    "stats": ("proportion_ci", "rate_ci", "dsr", "isr", "funnel_limits"),
}


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_names_are_the_same_objects_every_way(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the public names never warn
        import hsutils.clinical
        import hsutils.stats
        from hsutils import clinical
    module = {"clinical": clinical, "stats": stats}[name]
    assert module is getattr(hsutils, name)
    if name == "clinical":
        assert hsutils.clinical is rules_clinical is sys.modules["hsutils.clinical"]
        assert rules_clinical.__spec__.name == "hsutils.rules.clinical"  # the alias did not take its spec
    for fn in PUBLIC[name]:
        assert callable(getattr(module, fn))


def test_public_api_in_a_fresh_interpreter_without_warnings():
    # the first import of all, through the alias (nothing else imported it before)
    done = _run("import hsutils.clinical as c, hsutils.rules.clinical as r, hsutils.stats as s; "
                "assert c is r; print(round(float(c.egfr(1.0, 60, 1)), 1), s.proportion_ci(5, 10)[0])")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(round(float(rules_clinical.egfr(1.0, 60, 1)), 1)), "0.5"]
    done = _run("import hsutils; print(hsutils.clinical.ckd_g_stage(50.0))")
    assert done.returncode == 0 and done.stdout.strip() == "G3a", done.stderr


def test_import_hsutils_stays_cheap():
    done = _run("import sys, hsutils; print(sorted(m for m in sys.modules if m.startswith('hsutils.')))")
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.fixture
def forget_old_names(monkeypatch):
    """Each test imports an old name for the first time (another test may have imported it before)."""
    def forget(*names):
        for name in names:
            monkeypatch.delitem(sys.modules, f"hsutils.{name}", raising=False)
            monkeypatch.delitem(vars(hsutils), name, raising=False)  # not delattr: hasattr would import it
    return forget


def test_an_old_flat_name_is_the_same_module_with_a_warning(forget_old_names):
    forget_old_names("plots", "pipeline")
    from hsutils.publish import plots
    from hsutils.analysis import pipeline
    with pytest.warns(FutureWarning, match="hsutils.publish.plots"):
        import hsutils.plots as old_plots
    assert old_plots is plots
    with pytest.warns(FutureWarning, match="hsutils.analysis.pipeline"):
        from hsutils import pipeline as old_pipeline
    assert old_pipeline is pipeline
    assert hsutils.moved_to("synth") == "hsutils.demo.synth"
    assert hsutils.moved_to("no_such_module") is None
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("hsutils.no_such_module")
    with pytest.raises(AttributeError):
        hsutils.no_such_module


def test_an_old_module_function_spec_still_loads(forget_old_names):
    # a user's run YAML may name prepare_function: hsutils.pipeline:prepare_cache (docs/design.md §8)
    forget_old_names("pipeline")
    from hsutils.analysis import pipeline
    from hsutils.running import batch
    with pytest.warns(FutureWarning):
        assert batch._import_callable("hsutils.pipeline:prepare_cache") is pipeline.prepare_cache


def test_public_functions_still_compute():
    g = rules_clinical.ckd_g_stage(np.array([95.0, 45.0]))
    assert list(g) == ["G1", "G3a"]
    p, lo, hi = stats.proportion_ci(5, 10)
    assert p == 0.5 and 0 < lo < p < hi < 1

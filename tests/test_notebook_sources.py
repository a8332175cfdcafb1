"""The committed notebooks are the source: clean, tagged, and every parameter they show is used."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from hsutils.running import notebook_check, params
from hsutils.core.errors import ParameterError

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
BATCH_SUPPLIED = {"muni_code", "muni_name", "cache_dir", "out_dir"}  # hsutils.running.batch.plan_tasks
BY_HAND_ONLY = {"data_dir"}  # a batch passes the prepared cache instead


def test_every_registered_notebook_is_committed():
    assert {p.name for p in NOTEBOOKS} == {s.file for s in params.NOTEBOOKS.values()}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_clean(path):
    assert notebook_check.problems(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_parameter_is_used_by_the_notebook(path):
    nb = nbformat.read(str(path), as_version=4)
    cell = notebook_check.parameters_cell(nb)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and c is not cell)
    unused = [n for n in notebook_check.parameter_names(nb) if not re.search(rf"\b{re.escape(n)}\b", code)]
    assert unused == [], f"{path.name}: parameters shown but not used: {unused}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_common_parameters_are_the_validated_ones(path, run):
    """A parameter of the run YAML reaches a notebook only through RunParams (validated); the
    others are the batch's own, by hand only, or the notebook's own (`notebook_parameters`)."""
    names = set(notebook_check.parameter_names(path))
    common = set(run.base_parameters())
    run_keys = set(params.load_raw(None))  # keys of parameters/defaults.yaml
    assert not names & (run_keys - common - BY_HAND_ONLY - BATCH_SUPPLIED), "a run parameter the batch never passes"
    assert BATCH_SUPPLIED | BY_HAND_ONLY <= names
    assert {"fiscal_year", "suppress_threshold", "run_name", "interactive", "reference_area"} <= names
    assert "pref_code" not in names  # the area code (muni_code) says which prefecture


@pytest.fixture
def run(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "municipalities.csv").write_text(
        "muni_code,name,pref_code,medical_area\n17201,金沢市,17,石川中央\n17202,七尾市,17,能登中部\n", encoding="utf-8")
    raw = params.load_raw(None)
    raw.update(data_dir=data, out_dir=tmp_path / "out", notebook_dir=REPO / "notebooks")
    return params.validate(raw)


def test_batch_passes_only_declared_parameters(run):
    by_id = {s.id: s for s in run.notebooks}
    values = dict(muni_code="17201", muni_name="金沢市", cache_dir="c", out_dir="o")
    p03 = run.notebook_parameters_for(by_id["03"], **values)
    assert "standard_population" not in p03 and "fiscal_years" not in p03  # 03 has neither
    assert p03["reference_area"] == "pref" and p03["muni_code"] == "17201"
    p05 = run.notebook_parameters_for(by_id["05"], **values)
    assert p05["standard_population"] == "H27" and p05["fiscal_years"] == run.fiscal_years
    for spec in run.notebooks:
        declared = set(notebook_check.parameter_names(run.notebook_path(spec)))
        assert set(run.notebook_parameters_for(spec, **values)) <= declared


def test_notebook_parameters_must_exist_in_the_notebook(run, tmp_path):
    raw = dict(run.raw, notebook_parameters={"05": {"target": "x.yaml"}})
    with pytest.raises(ParameterError, match="05_evaluation.ipynb にないパラメータ target"):
        params.validate(raw)
    ok = params.validate(dict(run.raw, notebook_parameters={"05": {"conf": 0.9}}))
    assert ok.notebook_parameters_for(ok.notebooks[4], muni_code="17201")["conf"] == 0.9


def _notebook(tmp_path, first_tag=("parameters",), output=False) -> Path:
    nb = nbformat.v4.new_notebook()
    first = nbformat.v4.new_code_cell('muni_code = "17201"\nyears = [2023, 2024]')
    first.metadata["tags"] = list(first_tag)
    body = nbformat.v4.new_code_cell("print(muni_code, years)")
    if output:
        body.outputs = [nbformat.v4.new_output("stream", text="17201\n")]
        body.execution_count = 3
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), first, body]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "t.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_check_finds_outputs_and_strip_removes_them(tmp_path, capsys):
    path = _notebook(tmp_path, output=True)
    found = notebook_check.problems(path)
    assert any("出力が残っています" in p for p in found) and any("実行番号" in p for p in found)
    assert notebook_check.main([str(tmp_path)]) == 1
    ids = [c.id for c in nbformat.read(str(path), as_version=4).cells]
    assert notebook_check.main(["--strip", str(tmp_path)]) == 0
    cleaned = nbformat.read(str(path), as_version=4)
    assert [c.id for c in cleaned.cells] == ids and cleaned.cells[2].outputs == []
    assert notebook_check.parameter_values(path) == {"muni_code": "17201", "years": [2023, 2024]}


def test_check_finds_saved_widget_state_and_strip_removes_it(tmp_path):
    """JupyterLab saves the widgets' state into the notebook (make install turns this on); it is a
    result of running, like outputs, and is not committed."""
    path = _notebook(tmp_path)
    nb = nbformat.read(str(path), as_version=4)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                             "version_minor": 0}}
    nbformat.write(nb, str(path))
    assert [p for p in notebook_check.problems(path) if "ウィジェットの状態" in p]
    assert notebook_check.strip(path) is True
    cleaned = nbformat.read(str(path), as_version=4)
    assert "widgets" not in cleaned.metadata and "kernelspec" in cleaned.metadata
    assert notebook_check.problems(path) == [] and notebook_check.strip(path) is False


def test_check_requires_the_parameters_tag_and_literal_values(tmp_path):
    path = _notebook(tmp_path, first_tag=())
    assert any("parameters タグ" in p for p in notebook_check.problems(path))
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[1].metadata["tags"] = ["parameters"]
    nb.cells[1].source = "import os\nx = os.getcwd()"
    nbformat.write(nb, str(path))
    assert any("名前 = 値" in p for p in notebook_check.problems(path))


def test_check_requires_kernel_metadata(tmp_path):
    path = _notebook(tmp_path)
    nb = nbformat.read(str(path), as_version=4)
    del nb.metadata["kernelspec"]
    nbformat.write(nb, str(path))
    assert any("kernelspec" in p for p in notebook_check.problems(path))


def test_no_generator_scripts_remain():
    assert not list((REPO / "scripts").glob("make_*.py"))

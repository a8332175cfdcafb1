"""Paths, settings files and file plumbing (hsutils.core.settings, hsutils.core.files).

One place for paths and environment variables; a missing settings file is a Japanese error, not a
silent default; the person-level cache is only ever placed under a `confidential/` folder; one
atomic writer and one input hash (that sees every file, e.g. an edited .tsv).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from hsutils.core import files, settings
from hsutils.analysis import pipeline
from hsutils.patterns import evaluation, nephropathy
from hsutils.running import params
from hsutils.core.errors import ParameterError

REPO = Path(__file__).resolve().parents[1]
ENV_VARS = (settings.ENV_DATA_DIR, settings.ENV_OUT_DIR, settings.ENV_CACHE_DIR,
            settings.ENV_PARAMETERS_DIR, settings.ENV_NOTEBOOK_DIR)


@pytest.fixture
def no_env(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def installed(monkeypatch, tmp_path, no_env):
    """The package as if installed from a wheel: no repository around it."""
    monkeypatch.setattr(settings, "PACKAGE_DIR", tmp_path / "site-packages" / "hsutils")
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------------------------------------
# paths
# ---------------------------------------------------------------------------------------------
def test_checkout_defaults(no_env):
    assert settings.repo_root() == REPO
    assert settings.parameters_dir() == REPO / "parameters"
    assert settings.defaults_file() == REPO / "parameters" / "defaults.yaml"
    assert settings.notebook_dir() == REPO / "notebooks"
    assert settings.data_dir() == REPO / "data" / "demo"
    assert settings.out_dir() == REPO / "outputs"
    assert settings.PACKAGE_DATA_DIR == REPO / "hsutils" / "data"


def test_person_level_cache_is_only_under_confidential(no_env, tmp_path):
    default = settings.cache_dir()
    assert default == REPO / "outputs" / "interactive" / "confidential" / "cache"
    assert settings.cache_dir(run_name="demo", out=tmp_path) == tmp_path / "demo" / "confidential" / "cache"
    assert "confidential" in settings.cache_dir(out=tmp_path).parts


def test_environment_variables_win(monkeypatch, tmp_path, no_env):
    (tmp_path / "params").mkdir()
    monkeypatch.setenv(settings.ENV_DATA_DIR, str(tmp_path / "d"))
    monkeypatch.setenv(settings.ENV_OUT_DIR, str(tmp_path / "o"))
    monkeypatch.setenv(settings.ENV_PARAMETERS_DIR, str(tmp_path / "params"))
    assert settings.data_dir() == tmp_path / "d"
    assert settings.out_dir() == tmp_path / "o"
    assert settings.cache_dir() == tmp_path / "o" / "interactive" / "confidential" / "cache"
    assert settings.parameters_dir() == tmp_path / "params"
    assert settings.data_dir(tmp_path / "x") == tmp_path / "x"  # an explicit path wins over all


def test_installed_package_without_repository(installed):
    assert settings.repo_root() is None
    assert settings.data_dir() == installed / "data" / "demo"  # the current folder
    assert settings.out_dir() == installed / "outputs"
    with pytest.raises(ParameterError, match="HSUTILS_PARAMETERS_DIR"):
        settings.defaults_file()
    with pytest.raises(ParameterError, match="HSUTILS_NOTEBOOK_DIR"):
        settings.notebook_dir()


# ---------------------------------------------------------------------------------------------
# settings files: missing or unreadable = clear Japanese error
# ---------------------------------------------------------------------------------------------
def test_missing_defaults_yaml_is_an_error_not_an_empty_default(monkeypatch, tmp_path, no_env):
    monkeypatch.setenv(settings.ENV_PARAMETERS_DIR, str(tmp_path))
    with pytest.raises(ParameterError, match=r"パラメータファイル .*defaults\.yaml が見つかりません"):
        params.load_raw(None)


def test_parameters_folder_given_but_absent(monkeypatch, tmp_path, no_env):
    monkeypatch.setenv(settings.ENV_PARAMETERS_DIR, str(tmp_path / "nowhere"))
    with pytest.raises(ParameterError, match="環境変数 HSUTILS_PARAMETERS_DIR のフォルダ"):
        params.load_raw(None)


def test_unreadable_defaults_yaml(monkeypatch, tmp_path, no_env):
    (tmp_path / "defaults.yaml").write_bytes("prefecture: 17\n".encode("cp932") + b"\x82\xa0: [\n")
    monkeypatch.setenv(settings.ENV_PARAMETERS_DIR, str(tmp_path))
    with pytest.raises(ParameterError, match="defaults.yaml"):
        params.load_raw(None)


def test_example_files_of_the_parameters_folder_load(no_env):
    assert evaluation.resolve_targets_path() == REPO / "parameters" / "evaluation_targets_demo.yaml"
    assert isinstance(nephropathy.load_checklist(), dict)
    assert params.load_raw(None)["prefecture"] == 17


def test_example_files_missing_when_installed(installed):
    with pytest.raises(ParameterError, match="パラメータファイル"):
        evaluation.load_targets()
    with pytest.raises(ParameterError, match="パラメータファイル"):
        nephropathy.load_checklist()


# ---------------------------------------------------------------------------------------------
# hashes
# ---------------------------------------------------------------------------------------------
def test_sha256_file_matches_hashlib(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"abc" * 100_000)
    assert files.sha256_file(f) == hashlib.sha256(b"abc" * 100_000).hexdigest()


def _folder(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    (d / "kenshin.tsv").write_text("id\tbmi\n1\t22.0\n", encoding="utf-8")
    (d / "enrollment.csv").write_text("id\n1\n", encoding="utf-8")
    return d


@pytest.mark.parametrize("name", ["kenshin.tsv", "enrollment.csv"])
def test_editing_any_input_file_changes_the_fingerprint(tmp_path, name):
    d = _folder(tmp_path)
    before, before_cache = files.folder_fingerprint(d), pipeline._hash_folder(d, None)
    (d / name).write_text((d / name).read_text(encoding="utf-8").replace("1", "2"), encoding="utf-8")
    assert files.folder_fingerprint(d) != before
    assert pipeline._hash_folder(d, None) != before_cache  # the cache of an edited .tsv is rebuilt


def test_fingerprint_sees_renames_and_new_files_but_not_hidden_or_lock_files(tmp_path):
    d = _folder(tmp_path)
    before = files.folder_fingerprint(d)
    (d / ".DS_Store").write_bytes(b"x")
    (d / "~$enrollment.xlsx").write_bytes(b"lock")
    assert files.folder_fingerprint(d) == before
    (d / "kenshin.tsv").rename(d / "kenshin2.tsv")
    renamed = files.folder_fingerprint(d)
    assert renamed != before
    (d / "sub").mkdir()
    (d / "sub" / "x.csv").write_text("1", encoding="utf-8")
    assert files.folder_fingerprint(d) != renamed
    assert files.folder_fingerprint(d, ignore=("sub",)) == renamed


# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------
def test_atomic_path_leaves_old_file_and_no_temporary_on_failure(tmp_path):
    target = tmp_path / "out" / "t.parquet"
    with files.atomic_path(target) as tmp:
        pd.DataFrame({"a": [1]}).to_parquet(tmp)
    assert pd.read_parquet(target)["a"].tolist() == [1]
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert pd.read_parquet(target)["a"].tolist() == [1]
    assert sorted(p.name for p in target.parent.iterdir()) == ["t.parquet"]


def test_atomic_write_text_keeps_newlines_and_encoding(tmp_path):
    path = files.atomic_write_text(tmp_path / "a.csv", "列\r\n値\n", encoding="utf-8-sig")
    assert path.read_bytes() == "\ufeff列\r\n値\n".encode("utf-8")

# ヘルスサポート分析ワークブック — two commands: `make demo`, `make test`.
# Works on a machine with only Python 3.11, pip and make: creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# JupyterLab's defaults for this project (Japanese menus, widget panels kept in saved notebooks)
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json

.PHONY: demo test install clean gallery

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,bench]"
	touch $(STAMP)

$(LAB_OVERRIDES): $(STAMP) hsutils/running/lab_settings.py
	$(BIN)/python -m hsutils.running.lab_settings

install: $(STAMP) $(LAB_OVERRIDES)

demo: $(STAMP) $(LAB_OVERRIDES)
	$(BIN)/hsutils demo --out data/demo
	$(BIN)/hsutils batch parameters/demo.yaml

# -n auto: pytest-xdist, one worker per CPU (at most 4, conftest.py); each notebook stays on one worker
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS)

gallery: $(STAMP)
	$(BIN)/hsutils gallery --out outputs/gallery

clean:
	rm -rf outputs/demo outputs/gallery outputs/interactive outputs/cache data/demo

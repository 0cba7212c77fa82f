# Both targets create .venv on first use and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: run test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(PY) main.py $(or $(GRAPH),resources/examples/mlp_digits.ncg.json)

test: $(STAMP_DEV)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

lint: $(STAMP_DEV)
	$(PY) -m ruff check .

bench: $(STAMP_DEV)
	$(PY) main.py bench

clean:
	rm -rf $(VENV) build *.egg-info

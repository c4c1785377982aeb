# Quick start: `make demo` (set up, then classify a generated sample clip) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

.PHONY: setup demo test
setup: $(VENV)/.installed

demo: setup
	$(PY) cli.py make-sample data/raw_videos/sample_astronaut.mp4
	$(PY) cli.py extract data/raw_videos/sample_astronaut.mp4 --out data/faces

test: setup
	$(PY) -m pytest -q

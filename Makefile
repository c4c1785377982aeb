# Quick start: `make demo` (set up, then classify a generated sample clip with the shipped models) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

.PHONY: setup browser demo test weights
setup: $(VENV)/.installed

# Debian's chromium drives the browser test; without it (no root, no apt) that one test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ; } || \
		echo "chromium not installed: the browser test will be skipped"

# The main job on a clip made here from a real face photo (scikit-image's astronaut): no file needed.
demo: setup
	$(PY) cli.py make-sample data/raw_videos/sample_astronaut.mp4
	$(PY) cli.py classify-video data/raw_videos/sample_astronaut.mp4 --report reports/

test: setup browser
	$(PY) -m pytest -q

# Every stage on the GPU against the CPU, on ../shared/data, with GPU timings (bench/gpu_check.py).
# Exits 2 without a CUDA device; `$(PY) -m bench.gpu_check --quick --device-a cpu` checks the script itself.
.PHONY: gpu-check
gpu-check: setup
	$(PY) -m bench.gpu_check

# The shipped weights rebuilt from ../shared/data on this machine's CPU (about 7.5 hours; stop and rerun at will:
# done steps are kept, training resumes), into runs/recipe/weights. `make weights ARGS=--check` compares them
# with models/weights; `ARGS=--dry-run` lists the commands.
weights: setup
	$(PY) -m models.recipe $(ARGS)

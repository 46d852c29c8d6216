# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv and install into it.
# TORCH is what gets installed when the venv has no torch yet (override it for a CUDA build, e.g.
# `make test TORCH="torch==2.5.1 --index-url <your CUDA wheel index>"`); setup.cfg only asks for torch>=2.3,
# so a torch you already have is kept.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test lint demo clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check segformer3d_auto tests benchmarks

test: $(STAMP)
	$(PY) -m ruff check segformer3d_auto tests benchmarks
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/sf3d_model_summary
	$(PY) -m segformer3d_auto.demo --out demo_output

clean:
	rm -rf $(VENV) .venv-runtime build *.egg-info .pytest_cache demo_output

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
# The whole suite runs in this many pytest-xdist worker processes (`make test TEST_WORKERS=0`: all in the pytest process);
# most tests wait on a subprocess with one torch thread, so two workers keep two cores busy.
TEST_WORKERS ?= 2
# Tests that compare floating-point results. `make test` runs them first on one thread with oneDNN off (other
# kernels, other summation orders than the default run), so a tolerance that only holds on one machine's
# kernels fails here, on the developer's machine, and not at random in CI.
NUMERICAL_TESTS := tests/model/test_convert.py tests/model/test_segformer3d.py tests/inference/test_sliding_window.py \
	tests/inference/test_predictor.py tests/preprocessing tests/planners/test_memory.py \
	tests/evaluation/test_metrics.py tests/training/test_losses.py

.PHONY: install test test-numerics lint demo clean

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
	$(MAKE) --no-print-directory test-numerics
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

test-numerics: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider --torch-threads 1 --no-mkldnn $(NUMERICAL_TESTS)

demo: $(STAMP)
	$(VENV)/bin/sf3d_model_summary
	$(PY) -m segformer3d_auto.demo --out demo_output

clean:
	rm -rf $(VENV) .venv-runtime build *.egg-info .pytest_cache demo_output

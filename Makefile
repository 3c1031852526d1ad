# Two commands do all set-up on a fresh machine:
#   make demo   runs the main job (fedami run --clients 3, i.e. python sim/run.py --clients 3) on the synthetic cohort
#   make test   runs the tests (what CI runs)
# Both create and reuse .venv; the CPU build of torch goes in first so pip never pulls CUDA.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.fedami-installed
ARGS ?=
export FLWR_TELEMETRY_ENABLED = 0

.PHONY: demo test test-slow lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python sim/run.py --clients 3 $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy common client server sim

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

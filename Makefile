# Two commands do all set-up on a fresh machine:
#   make demo   runs the main job (fedami run --clients 3, i.e. python sim/run.py --clients 3) on the synthetic cohort
#   make test   runs the tests (what CI runs)
#   make bench  runs every benchmark into BENCHMARKS.md (ARGS=--quick: a few minutes)
# Both create and reuse .venv; the CPU build of torch goes in first so pip never pulls CUDA.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.fedami-installed
ARGS ?=
export FLWR_TELEMETRY_ENABLED = 0

.PHONY: demo test test-slow bench lint venv clean image-context compose-data compose-up test-compose

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
	$(BIN)/python -m pytest -m "not slow and not compose" $(ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "slow and not compose" $(ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/suite.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy common client server sim

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# ---- docker-compose.yml on one machine (README: A real deployment). COMPOSE is the compose command:
# podman-compose here (`source /tmp/fedctr/env.sh` after ../shared/tools/container-env.sh), docker compose elsewhere.
COMPOSE ?= podman-compose
COMPOSE_HOSPITALS ?= hospital_a,hospital_b,hospital_c
comma := ,
FEDAMI_N_ECGS ?= 600
FEDAMI_ROUNDS ?= 2
export FEDAMI_N_ECGS FEDAMI_ROUNDS

# The CPU torch wheel goes into the build context, so the image never pulls a CUDA build; the other packages are
# pinned to the versions of this environment, the one the tests ran in.
image-context: $(STAMP)
	ls deploy/wheels/torch-*.whl >/dev/null 2>&1 || $(BIN)/python -m pip download --quiet --no-deps "$(TORCH_SPEC)" -d deploy/wheels
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^torch==' > deploy/wheels/constraints.txt

# Keys (one folder per machine) and each hospital's prepared store (one folder per node); kept between runs.
compose-data: $(STAMP)
	test -d deploy/secrets/ca || $(BIN)/fedami deploy keys --hospitals $(COMPOSE_HOSPITALS) --san superlink --san localhost --out deploy/secrets
	$(BIN)/fedami ingest --data synthetic --n-ecgs $(FEDAMI_N_ECGS) --export deploy/stores

compose-up: image-context compose-data
	mkdir -p deploy/results
	$(COMPOSE) build
	$(COMPOSE) up -d superlink $(foreach h,$(subst $(comma), ,$(COMPOSE_HOSPITALS)),supernode-$(h) worker-$(h))
	$(COMPOSE) run --rm coordinator; rc=$$?; $(COMPOSE) down -t 5; exit $$rc

# The compose deployment, checked: it completes, results are written, each hospital sees only its own store.
test-compose: image-context compose-data
	$(BIN)/python -m pytest -m compose $(ARGS)

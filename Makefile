# twinode: `make train` and `make test` set up a fresh machine (a .venv here) and run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# CPU wheel unless a CUDA driver is present (a bare `torch` requirement pulls a multi-GB CUDA build).
TORCH_CPU ?= torch==2.13.0
# Declares optuna<3 but works with optuna 4/5 (pyproject extra "scale"): install without its pins.
OPTUNA_SWEEPER ?= hydra-optuna-sweeper==1.3.0
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)

.PHONY: help venv install install-dev train test test-slow test-integration test-all bench bench-full gpu-check lint clean

help:
	@echo "make train      set up .venv and train the default twin on the embedded cohort"
	@echo "make test       set up .venv with dev extras and run the test suite"
	@echo "make test-slow  run the slow suites (real data, long training)"
	@echo "make test-integration  DDP, resume, sweep and MLflow-server runs (multi-process, a few minutes)"
	@echo "make bench      run every scripts/bench_*.py with --quick (JSON in $(BENCH_OUT)/)"
	@echo "make bench-full run every benchmark script in full (bench_data rewrites docs/benchmarks.md's Data table)"
	@echo "make gpu-check  the benchmarks on CUDA within 5 minutes (scripts/gpu_check.sh; results in gpu_results/)"
	@echo "make lint       ruff and mypy on src/, and the CLI import rules"

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@if [ -z "$(HAS_CUDA)" ]; then $(PIP) install --quiet "$(TORCH_CPU)"; fi
	touch $@

$(VENV)/.installed: $(VENV)/.created pyproject.toml
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.created pyproject.toml
	$(PIP) install --quiet -e ".[dev,wandb]"
	$(PIP) install --quiet --no-deps "$(OPTUNA_SWEEPER)"
	touch $@ $(VENV)/.installed

venv: $(VENV)/.created
install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

train: $(VENV)/.installed
	$(VENV)/bin/twinode-train $(ARGS)

test: $(VENV)/.installed-dev
	$(PY) -m pytest -m "not slow and not gpu" -q $(ARGS)

test-slow: $(VENV)/.installed-dev
	$(PY) -m pytest -m "slow and not gpu" -q $(ARGS)

test-integration: $(VENV)/.installed-dev
	$(PY) -m pytest -q tests/integration/test_ddp.py tests/integration/test_resume.py \
		tests/integration/test_sweep.py tests/integration/test_mlflow_server.py $(ARGS)

test-all: $(VENV)/.installed-dev
	$(PY) -m pytest -q $(ARGS)

# Every bench script, each writing $(BENCH_OUT)/<script>[_full].json; goes on past a failing
# script and names the failures at the end. ARGS reach every script (e.g. ARGS="--threads 1").
BENCH_OUT ?= bench_results
define run_benches
	@mkdir -p $(BENCH_OUT); failed=""; \
	for s in scripts/bench_*.py; do \
	  n=$$(basename $$s .py); echo "== $(PY) $$s $(1) --json $(BENCH_OUT)/$$n$(2).json $(ARGS)"; \
	  $(PY) $$s $(1) --json $(BENCH_OUT)/$$n$(2).json $(ARGS) || failed="$$failed $$n"; \
	done; \
	if [ -n "$$failed" ]; then echo "failed:$$failed"; exit 1; fi
endef

bench: $(VENV)/.installed-dev
	$(call run_benches,--quick,)

bench-full: $(VENV)/.installed-dev
	$(call run_benches,,_full)

# ruff and mypy read their settings from pyproject.toml. The import rules: no CLI module imports
# another (they share twinode.apps.command_line and the rest of the library), and scripts/ use the
# library, not the CLIs.
CLI_IMPORT := (from|import) +twinode\.cli|from +\.
lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src
	$(VENV)/bin/mypy
	@if grep -rnE '^\s*($(CLI_IMPORT))' src/twinode/cli --include='*.py'; then \
	  echo "lint: a CLI module imports another CLI module (above)"; exit 1; fi
	@if grep -rnE '^\s*(from|import) +twinode\.cli' scripts; then echo "lint: scripts/ import twinode.cli (above)"; exit 1; fi
	@echo "lint: ok"

gpu-check:
	bash scripts/gpu_check.sh $(ARGS)

clean:
	rm -rf outputs multirun mlartifacts mlflow.db mlflow.db.lock .pytest_cache .mypy_cache .ruff_cache

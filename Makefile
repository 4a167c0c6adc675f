# otel-llm: two commands for a newcomer.
#   make demo   -- runs the main job (bootstraps .venv first)
#   make test   -- runs the test suite (bootstraps .venv and the Prometheus/Alertmanager packages first)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.otel-llm-installed
PIP := $(BIN)/python -m pip install -q --disable-pip-version-check

.PHONY: demo test lint bench eval-views venv backends clean dashboards rules

$(STAMP): pyproject.toml setup.py constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel
	# torch first, pinned: any other spec would pull gigabytes of CUDA wheels
	$(PIP) -c constraints.txt torch==2.13.0
	$(PIP) -c constraints.txt -e '.[dev]'
	@touch $@

venv: $(STAMP)

backends:
	@bash scripts/ensure-backends.sh

test: $(STAMP) backends
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/otel-llm demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/server_middleware.py
	$(BIN)/python benchmarks/gpu_collect.py
	$(BIN)/python benchmarks/processors.py
	$(BIN)/python benchmarks/attribution.py
	$(BIN)/python benchmarks/request_outliers.py
	$(BIN)/python benchmarks/analyze.py
	$(BIN)/python benchmarks/exporters.py

# NAB scores of the threshold detector on every development view (docs/processors.md), side by side:
#   make eval-views [DEV=path/to/nab-layout-with-point-labels] [SET="policy.threshold=4.0 tail_scale=2.0"]
DEV ?=
SET ?=
eval-views: $(STAMP)
	$(BIN)/python scripts/eval_views.py $(if $(DEV),--dev $(DEV)) $(foreach s,$(SET),--set $(s))

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache report

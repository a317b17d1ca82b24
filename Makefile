# spcwatch — the commands a user runs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv services down run test test-unit lint bench chaos dashboards clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

venv: $(STAMP)  ## create .venv and install spcwatch with its dev tools

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "spcwatch needs Python >= 3.11 (PYTHON=$(PYTHON))" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

services: venv  ## start local Kafka (127.0.0.1:9092) and MariaDB (127.0.0.1:3306)
	scripts/services.sh up

down:  ## stop the local services
	scripts/services.sh down

run: venv  ## services + worker (+ simulator when available); Ctrl-C stops what it started
	scripts/run.sh

PYTEST_WORKERS ?= 2

test: venv  ## the whole suite, unit and integration, against real Kafka, MariaDB, Prometheus, Alertmanager
	scripts/services.sh tools
	@if [[ -z "$${SPCWATCH_KAFKA_BOOTSTRAP:-}$${SPCWATCH_TEST_MYSQL_URL:-}" ]]; then scripts/services.sh up; fi
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

test-unit: venv  ## only the tests that need no services
	$(BIN)/pytest -m "not integration"

lint: venv  ## ruff, and lint-imports (the layers: README "Layout")
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: venv services  ## benchmarks; writes bench/README.md
	$(BIN)/python -m bench

chaos: venv services  ## the fault suite with longer streams; writes bench/RELIABILITY.md
	$(BIN)/python -m bench.chaos

dashboards: venv  ## regenerate deploy/grafana/dashboards/*.json from stream_app/dashboards (commit the result)
	$(BIN)/python -m stream_app.dashboards

clean:  ## remove the venv and local state (not the services' data: scripts/services.sh purge)
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .spcwatch-data spcwatch.db *.egg-info

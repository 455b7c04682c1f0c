# calltouch-metrika: the front door. `make demo` and `make test` are all a new user needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SANDBOX_PORT ?= 8765
PYTEST_ARGS ?=

.PHONY: help install system-deps test lint sandbox demo up down bench clean

help:
	@echo "make demo     run the daily calls pipeline for yesterday against the sandbox"
	@echo "make test     install (if needed) and run every test"
	@echo "make lint     ruff, including Airflow's AIR rules"
	@echo "make sandbox  serve the API emulator on 127.0.0.1:$(SANDBOX_PORT) (foreground)"

# The virtualenv is rebuilt from the locks whenever they (or pyproject.toml) change.
$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@if [ -x $(BIN)/python ] && ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then \
	  echo "note: the locks are compiled for Python 3.11; $(VENV) uses another version"; fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

install: $(STAMP)

# Real servers for the end-to-end tests (PostgreSQL, Chromium) come from Debian packages.
system-deps:
	@bash tools/system-deps.sh

test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff check --preview --select AIR dags plugins

sandbox: $(STAMP)
	$(BIN)/python -m sandbox --host 127.0.0.1 --port $(SANDBOX_PORT)

demo: $(STAMP)
	$(BIN)/python tools/demo.py

# A local Airflow (api-server, scheduler, dag-processor, triggerer) plus the sandbox, in the background.
up: $(STAMP)
	$(BIN)/python tools/local_airflow.py up

down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python tools/local_airflow.py down; fi

bench: $(STAMP)
	$(BIN)/python bench/extract_calls.py
	$(BIN)/python bench/transform_calls.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis data logs .airflow-*

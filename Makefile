# calltouch-metrika: the front door. `make demo` and `make test` are all a new user needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SANDBOX_PORT ?= 8765
PYTEST_ARGS ?=

.PHONY: help install system-deps test lint sandbox demo up down airflow bench dist clean

help:
	@echo "make install      build .venv from the locks (every target does it when needed)"
	@echo "make demo         run the daily calls pipeline for yesterday against the sandbox"
	@echo "make test         install (if needed) and run every test"
	@echo "make lint         ruff, including Airflow's AIR rules"
	@echo "make sandbox      serve the API emulator on 127.0.0.1:$(SANDBOX_PORT) (foreground)"
	@echo "make up           a local Airflow (UI, scheduler, triggerer, ...) + the sandbox, in the background"
	@echo "                  (EXECUTOR=celery make up: CeleryExecutor, a private Redis and two workers)"
	@echo "make airflow ARGS=\"dags list\"   the Airflow CLI against the stack make up started"
	@echo "make down         stop what make up started"
	@echo "make bench        the extraction and transform benchmarks (bench/)"
	@echo "make dist         build the wheel into dist/"
	@echo "make system-deps  Debian packages the end-to-end tests need (PostgreSQL, Chromium; as root)"
	@echo "make clean        remove .venv, caches, data/, logs/ and the make up state (.airflow-local)"

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
# EXECUTOR=celery make up: CeleryExecutor with a private Redis (broker + shared rate limit) and two workers.
EXECUTOR ?= local
up: $(STAMP)
	$(BIN)/python -m tools.local_airflow up --executor $(EXECUTOR)

down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m tools.local_airflow down; fi

# The Airflow CLI against the running `make up` stack, e.g. make airflow ARGS="dags list"
# (or: source .airflow-local/env; airflow dags list).
ARGS ?= -- --help
airflow: $(STAMP)
	@$(BIN)/python -m tools.local_airflow airflow $(ARGS)

bench: $(STAMP)
	$(BIN)/python bench/extract_calls.py
	$(BIN)/python bench/transform_calls.py
	$(BIN)/python bench/upload_operator.py

dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m pip wheel --quiet --no-deps -w dist .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis data logs .airflow-* dist build

# Loadbay developer commands. `make run` and `make test` install whatever is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed

.PHONY: install run test lint typecheck check bench clean chromium

install: $(PIP_STAMP) $(NPM_STAMP)

$(PIP_STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# --ignore-scripts: the emulators need no install scripts, and some try to download binaries.
$(NPM_STAMP): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund
	touch $@

# Debian's Chromium for the browser tests (never a downloaded browser build).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends chromium; fi; \
	fi

## Run Loadbay locally: Azurite + devhost + SWA emulator; the UI at http://127.0.0.1:4280. Ctrl-C stops all.
run: install
	$(PY) -m devhost.stack

## Install everything and run the whole test suite (starts its own Azurite on free ports).
test: install chromium
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(PIP_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(PIP_STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

bench: install
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	for script in bench/*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf .localdata test-output .pytest_cache .mypy_cache .ruff_cache

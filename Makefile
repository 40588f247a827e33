# evalwatch — two commands: `make run` (the demo) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
CONFIG ?= config/default.yaml
PYTEST_ARGS ?=

.PHONY: run test venv system-deps lint bench models clean help

help:
	@echo "make run    - set up .venv, start S3 server + hub + simulated agents, print the dashboard URL"
	@echo "make test   - install test dependencies (PostgreSQL, Chromium) and run the test suite"
	@echo "make bench  - run the benchmarks under bench/ (long)"
	@echo "make lint   - ruff + mypy"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[hub,test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# Debian packages the tests need: a PostgreSQL server and Chromium for the browser tests.
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

run: venv
	$(BIN)/evalwatch run --config $(CONFIG)

test: venv system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy config storage capture analysis dashboard evalwatch sessions

bench: venv
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) data .pytest_cache

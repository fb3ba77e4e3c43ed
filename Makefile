# One entry point for people and CI. `make test` is exactly what CI runs (.ci/run calls it);
# `make run` runs the sample bundles end to end on the local stack. Both set up what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY313 ?= $(shell PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || command -v python3.13)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: help setup run test check lint typecheck unit integration e2e clean

help:
	@echo "make run    - set up, then run the sample bundles end to end on the local stack"
	@echo "make test   - set up, then everything CI runs: lint, types, all test tiers"

$(INSTALLED): pyproject.toml
	@test -n "$(PY313)" || { echo "python3.13 not found (pyenv install 3.13.0)"; exit 1; }
	$(PY313) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[local,dev]'
	touch $@

setup: $(INSTALLED)

lint: setup
	$(VENV)/bin/ruff check .

typecheck: setup
	$(VENV)/bin/mypy

check: lint typecheck

unit: setup
	$(PY) -m pytest tests/unit

integration: setup
	$(PY) -m pytest tests/integration

e2e: setup
	$(PY) -m pytest tests/e2e

test: check
	$(PY) -m pytest

run: setup
	$(VENV)/bin/udf-runner demo

clean:
	rm -rf $(VENV) .aws-sam .mypy_cache .pytest_cache .ruff_cache

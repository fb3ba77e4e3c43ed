# One entry point for people and CI. `make test` is exactly what CI runs (.ci/run calls it);
# `make run` runs the sample bundles end to end on the local stack. Both set up what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY313 ?= $(shell PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || command -v python3.13)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# npm ci's hidden lockfile: newer than package-lock.json once the Node test fixtures' tools are in.
NODE_FIXTURES := tests/fixtures/node/node_modules/.package-lock.json
SAMPLES_NPM := samples/node_modules/.package-lock.json
# sam build runs scripts/Makefile, which pip-installs the function's dependencies with PIP_PYTHON.
SAM := SAM_CLI_TELEMETRY=0 PIP_PYTHON=$(abspath $(PY)) $(VENV)/bin/sam

.PHONY: help setup run test check lint typecheck unit integration e2e clean sam sam-validate sam-build layer \
	bench bench-quick toolchains fixtures

help:
	@echo "make run    - set up, then run the sample bundles end to end on the local stack"
	@echo "make test   - set up, then everything CI runs: lint, types, SAM, all test tiers, bench-quick"
	@echo "make sam    - sam validate --lint, cfn-lint, sam build and the 250 MB size check"
	@echo "make bench  - the benchmark suite (docs/performance.md); bench-quick: the small CI run"

$(INSTALLED): pyproject.toml
	@test -n "$(PY313)" || { echo "python3.13 not found (pyenv install 3.13.0)"; exit 1; }
	$(PY313) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[local,dev]'
	touch $@

setup: $(INSTALLED) layer $(NODE_FIXTURES) $(SAMPLES_NPM)

# The Node.js runtime layer in layers/nodejs/build (a no-op when already built for its pins).
layer:
	$(MAKE) -C layers/nodejs local

$(NODE_FIXTURES): tests/fixtures/node/package-lock.json
	cd tests/fixtures/node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

$(SAMPLES_NPM): samples/package-lock.json
	cd samples && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

# Go and Rust build the official-client test fixtures and AWS's Runtime Interface Emulator
# (tests/support/toolchains.py, cached in ~/.cache/udf-runner); cargo-lambda and zig come with
# the virtualenv. Neither toolchain comes from a package registry: say what to install.
TOOL_PATH := $(HOME)/.cargo/bin:/usr/local/go/bin:$(PATH)
GO_MIN := 1.26
toolchains: setup
	@PATH="$(TOOL_PATH)"; \
	command -v go >/dev/null || { echo "go not found: install Go $(GO_MIN) or later (https://go.dev/dl) into /usr/local/go"; exit 1; }; \
	have=$$(go env GOVERSION | sed 's/^go//'); \
	[ "$$(printf '%s\n' $(GO_MIN) "$$have" | sort -V | head -1)" = $(GO_MIN) ] || \
		{ echo "go $$have is too old: the fixtures need Go $(GO_MIN) or later"; exit 1; }; \
	command -v cargo >/dev/null || { echo "cargo not found: install Rust 1.89 or later with rustup (https://rustup.rs)"; exit 1; }; \
	echo "toolchains: go $$have, $$(cargo --version), $$($(VENV)/bin/cargo-lambda lambda --version)"

# The Rust and Go fixtures, the RIE and the Rust/Polars sample, built before pytest (a cold Rust
# build outlasts a test's timeout); a no-op when ~/.cache/udf-runner holds them for these sources
# and pins.
fixtures: toolchains
	PATH="$(TOOL_PATH)" $(PY) -m tests.support.toolchains

lint: setup
	$(VENV)/bin/ruff check .

typecheck: setup
	$(VENV)/bin/mypy

check: lint typecheck

unit: setup
	$(PY) -m pytest tests/unit

integration: fixtures
	$(PY) -m pytest tests/integration

e2e: fixtures
	$(PY) -m pytest tests/e2e

test: check sam fixtures
	$(PY) -m pytest
	$(MAKE) --no-print-directory bench-quick

# The runner's overhead against the physical floor: the table, and benchmarks/results/*.json.
# bench-quick (part of `make test`) checks that every row yields a figure, not the figures.
bench: setup
	$(PY) -m benchmarks

bench-quick: setup
	$(PY) -m benchmarks --quick

sam-validate: setup
	$(SAM) validate --lint
	$(VENV)/bin/cfn-lint template.yaml

sam-build: setup
	$(SAM) build
	$(PY) scripts/artifact_size.py .aws-sam/build

sam: sam-validate sam-build

run: setup
	$(VENV)/bin/udf-runner demo

clean:
	rm -rf $(VENV) .aws-sam .mypy_cache .pytest_cache .ruff_cache

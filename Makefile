# crossover: the only entry points a newcomer needs.
#   make demo   - bring up the lab and watch crossover on a real trace
#   make test   - every test (unit, integration against the lab, e2e)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install lint fmt test test-unit crds demo lab-deps cluster cluster-down bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

lint: install
	$(BIN)/ruff check costpolicy operator tests
	$(BIN)/ruff format --check costpolicy operator tests
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff format costpolicy operator tests
	$(BIN)/ruff check --fix costpolicy operator tests

## Lab prerequisites: the control plane, helm and Prometheus, built from Go modules (cached by version in
## ~/.cache/crossover/bin, so only the first run on a machine pays for the build), and the Prometheus Operator's CRDs.
lab-deps: install
	$(BIN)/crossover lab build

## The lab: a real control plane, fake GPU nodes, Prometheus and the pod harness on 127.0.0.1 (idempotent).
cluster: lab-deps
	$(BIN)/crossover lab up

cluster-down:
	@if [ -x $(BIN)/crossover ]; then $(BIN)/crossover lab down; else echo "nothing to stop"; fi

## Unit tests only: no lab needed.
test-unit: install
	$(BIN)/pytest -m 'not lab'

## Everything: the lab fixtures start what the tests need (and stop it again unless `make cluster` started it).
test: lab-deps
	$(BIN)/pytest

crds: install
	$(BIN)/crossover crds --out crds/ --out charts/crossover/files/crds/

## The main job: lab, operator by Helm, a real day slice replayed at x72 through the router, report in reports/demo/.
demo: lab-deps
	$(BIN)/crossover demo

## The cost benchmark (a few minutes): every policy, trace, example manifest and volume -> bench/RESULTS.md.
bench: install
	$(BIN)/crossover bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

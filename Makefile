# The README's commands. `make train` and `make test` create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup setup-dev train test test-all lint bench clean

$(BIN)/difflab-train:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -e .

setup: $(BIN)/difflab-train

setup-dev: setup
	$(BIN)/pip install -e ".[dev]"

train: setup
	$(BIN)/difflab-train

test: setup-dev
	$(BIN)/pytest

test-all: setup-dev
	$(BIN)/pytest -m "slow or not slow"

lint: setup-dev
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/main_job_fid.py

clean:
	rm -rf outputs .pytest_cache

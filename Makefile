# The README's commands. `make train` and `make test` create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup setup-dev setup-bench train test test-all lint bench bench-fid clean

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

setup-bench: setup
	$(BIN)/pip install -e ".[bench]"

# the speed benchmarks of benchmarks/README.md (the peers come with the bench extra)
bench: setup-bench
	cd benchmarks && ../$(BIN)/python training_step.py --bf16
	cd benchmarks && ../$(BIN)/python framework_overhead.py
	cd benchmarks && ../$(BIN)/python sampling_throughput.py

bench-fid: setup
	$(BIN)/python benchmarks/main_job_fid.py

clean:
	rm -rf outputs .pytest_cache

# FedMarket: `make demo` and `make test` are the whole set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# A writable, short temp dir keeps Ray's socket paths under the Unix limit.
export TMPDIR ?= /tmp
export FLWR_TELEMETRY_ENABLED := 0

.PHONY: install demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned exactly: the CPU wheel this machine holds locally.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/fedmarket run scenarios/quickstart.yaml --out runs/quickstart --force
	$(BIN)/fedmarket ledger verify runs/quickstart
	$(BIN)/fedmarket plot runs/quickstart
	@echo "Results: runs/quickstart/ (manifest.json, ledger.db, metrics.parquet, rounds.parquet, model.safetensors, plots/)"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict marketplace/

# The whole suite, slow tests included (CI runs exactly this).
test: lint
	$(BIN)/pytest -q

# Everything but the tests marked slow.
test-fast: lint
	$(BIN)/pytest -q -m "not slow"

bench: install
	$(BIN)/python benchmarks/dp_overhead.py
	$(BIN)/python benchmarks/flower_overhead.py
	$(BIN)/python benchmarks/ledger.py
	$(BIN)/python benchmarks/shapley.py
	$(BIN)/python benchmarks/gpu.py

clean:
	rm -rf runs studies .pytest_cache .mypy_cache .ruff_cache

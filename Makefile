# Two entry points: `make run` (set up, load the demo consortium, run) and
# `make test` (set up, run the test suite). Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test lint format bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/tongjie demo
	$(BIN)/tongjie serve --example-key

# The fast domain tier first (no database: the rules on the in-memory unit of work), then
# everything that needs PostgreSQL. pytest prints each tier's time.
test: install
	$(BIN)/python -m pytest tests/domain
	$(BIN)/python -m pytest --ignore=tests/domain

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python -m benchmarks.commands

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache *.egg-info

# The two commands of a fresh machine: `make run` (start the mesh) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run run-firestore stop stop-firestore test lint format clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

## Start the whole mesh under Circus on the embedded SQLite store (data in ./var).
run: install
	$(BIN)/ingest up

## The same mesh on Google's Firestore emulator (needs gcloud + the emulator component).
run-firestore: install
	INGEST_CONFIG=config/firestore-emulator.toml $(BIN)/ingest up

stop-firestore: install
	INGEST_CONFIG=config/firestore-emulator.toml $(BIN)/ingest down

stop: install
	$(BIN)/ingest down

## Lint, then the whole test suite (unit, contract, end-to-end under Circus).
test: install lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache *.egg-info

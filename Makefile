# Two commands do everything on a fresh machine:
#   make demo   create .venv, install, run the offline demo (IMP on 8x8 digits, CSVs + figure)
#   make test   create .venv, install with test extras, run the whole test suite (one pytest-xdist worker per core)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-quick test-serial lint benchmark

$(BIN)/lth: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/lth

demo: setup
	$(BIN)/lth demo

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-quick: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

test-serial: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n 0

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

benchmark: setup
	$(BIN)/python benchmarks/lenet_round.py

# scopectl — two commands: `make demo` and `make test`.
# TORCH_SPEC picks the torch build installed before the project (a CPU build keeps CI small);
# a GPU user runs e.g. `make demo TORCH_SPEC='torch --index-url https://download.pytorch.org/whl/cu128'`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck pytest pytest-fast install clean firmware cad docs bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC) || $(BIN)/python -m pip install --quiet 'torch>=2.4' --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/scopectl demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# The same without the tests marked `slow` (about 20 s and more each); `make test` (and CI) runs them all.
pytest-fast: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-fast: lint typecheck pytest-fast

firmware:
	$(MAKE) -C firmware

cad:
	$(MAKE) -C hardware_cad

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build dist site .pytest_cache .mypy_cache .ruff_cache

# Each target builds its own virtual environment; nothing outside .venv is touched.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	@rm -f .demo-store.sqlite
	$(BIN)/iamtrim ingest samples/AWSLogs samples/other-formats --store .demo-store.sqlite
	$(BIN)/iamtrim principals --store .demo-store.sqlite
	$(BIN)/iamtrim usage ml-notebook-execution --store .demo-store.sqlite
	$(BIN)/iamtrim generate-policy ml-notebook-execution --store .demo-store.sqlite --format policy --explain

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

check: $(STAMP)
	$(BIN)/ruff check iamtrim tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/ingest_bench.py

clean:
	rm -rf $(VENV) .demo-store.sqlite .demo-store.sqlite.lock .pytest_cache .mypy_cache .ruff_cache

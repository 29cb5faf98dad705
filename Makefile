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
	@echo "# 1. What was ingested"
	@$(BIN)/iamtrim ingest samples/AWSLogs samples/other-formats --store .demo-store.sqlite
	@echo; echo "# 2. Who did what"
	@$(BIN)/iamtrim principals --store .demo-store.sqlite
	@echo; echo "# 3. The least-privilege policy for ml-notebook-execution (--format policy prints the document)"
	@$(BIN)/iamtrim generate-policy ml-notebook-execution --store .demo-store.sqlite --brief
	@echo; echo "# 4. What its current policies grant that it never used"
	@$(BIN)/iamtrim diff ml-notebook-execution --store .demo-store.sqlite \
		--authz samples/authz/account-authorization-details.json --brief

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

check: $(STAMP)
	$(BIN)/ruff check iamtrim tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/ingest_bench.py

clean:
	rm -rf $(VENV) .demo-store.sqlite .demo-store.sqlite.lock .pytest_cache .mypy_cache .ruff_cache

# The two commands of the README, plus the checks they run. Each target installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint bench screenshots install clean

demo: $(STAMP)  ## bring the whole system up on embedded defaults
	$(BIN)/exchange demo

test: $(STAMP)  ## lint, type-check and run every test (SQLite, and PostgreSQL when installed)
	scripts/test

bench: $(STAMP)  ## full exchange against a direct registry call, side by side
	$(BIN)/python -m bench.exchange
	$(BIN)/python -m bench.audit

screenshots: $(STAMP)  ## the README's pictures, taken by the browser journey test
	EXCHANGE_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/test_browser_journey.py tests/test_agency_journey.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

clean:
	rm -rf $(VENV) demo-data .pytest_cache .mypy_cache .ruff_cache

# Two commands take a fresh clone to a running service (`make demo`) and a green suite (`make test`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

PORT ?= 8000

demo: $(STAMP)
	$(BIN)/labhooks demo --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# The README's pictures, refreshed on purpose: the browser tests write their screenshots into
# docs/screenshots/ (otherwise into a temporary folder, so `make test` leaves the tree clean).
.PHONY: screenshots
screenshots: $(STAMP)
	LABHOOKS_SCREENSHOTS=$(CURDIR)/docs/screenshots LABHOOKS_REQUIRE_BROWSER=1 $(BIN)/pytest \
		tests/test_web_ui.py \
		"tests/test_web_delivery_log.py::test_a_delivery_failing_with_500_then_succeeding_shows_red_then_green"

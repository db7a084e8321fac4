# Two commands take a fresh clone to a running service (`make demo`) and a green suite (`make test`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DEMO_EMAIL ?= admin@example.org
DEMO_PASSWORD ?= labhooks-demo

.PHONY: demo test lint install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/labhooks bootstrap --email $(DEMO_EMAIL) --password $(DEMO_PASSWORD)
	@echo "Log in as $(DEMO_EMAIL) / $(DEMO_PASSWORD); the line above is an API token."
	$(BIN)/labhooks serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# The README's two commands: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo down status lint test test-fast clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq -e '.[dev]'
	touch $@

install: $(INSTALLED)

demo: install  ## bring the local stack up and run the refit pipeline once
	$(BIN)/conveyor demo

down:  ## stop exactly what `make demo` started
	@if [ -x $(BIN)/conveyor ]; then $(BIN)/conveyor down; else echo "Nothing was installed."; fi

status: install
	$(BIN)/conveyor status

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint  ## the whole suite, slow end-to-end tests included (what CI runs)
	$(BIN)/pytest

test-fast: lint
	$(BIN)/pytest -m "not slow"

clean: down
	rm -rf .conveyor

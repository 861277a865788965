# The README's two commands: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# uv installs uv.lock exactly (no resolution at install time). Pinned by version and by the hash
# of its Linux x86_64 wheel on PyPI (the lock covers Linux x86_64 only; see [tool.uv] in pyproject.toml).
UV_VERSION := 0.13.9
UV_SHA256 := d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19
UV := $(BIN)/uv
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install lock-check demo down status lint docs test test-fast clean

$(UV): Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	echo 'uv==$(UV_VERSION) --hash=sha256:$(UV_SHA256)' > $(VENV)/uv-requirements.txt
	$(BIN)/pip install --require-hashes --no-deps -r $(VENV)/uv-requirements.txt
	touch $@

# Exactly the locked set: the project editable, its dependencies and the dev extra (all extras).
$(INSTALLED): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras
	touch $@

install: $(INSTALLED)

# Fails when pyproject.toml changed and uv.lock was not updated (`uv lock`). The check reads only the lock
# (offline); only when that fails does it ask the index, for uv's own explanation of what is out of date.
lock-check: $(UV)
	@$(UV) lock --check --offline --quiet 2>/dev/null || $(UV) lock --check || \
		{ echo "uv.lock does not match pyproject.toml: run '$(UV) lock' and commit uv.lock." >&2; exit 1; }

demo: install  ## bring the local stack up and run the refit pipeline once
	$(BIN)/conveyor demo

down:  ## stop exactly what `make demo` started
	@if [ -x $(BIN)/conveyor ]; then $(BIN)/conveyor down; else echo "Nothing was installed."; fi

status: install
	$(BIN)/conveyor status

lint: lock-check install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

docs: install  ## the MkDocs site in build/site; --strict fails on a broken link or a missing page
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint docs  ## the whole suite, slow end-to-end tests included (what CI runs)
	$(BIN)/pytest

test-fast: lint docs
	$(BIN)/pytest -m "not slow"

clean: down
	rm -rf .conveyor

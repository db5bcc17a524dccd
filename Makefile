# The two newcomer commands are `make demo` and `make test`; each installs what it needs
# into ./.venv first (pinned by constraints.txt), so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCES := syncer tests migrations bench
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: install test test-fast lint format demo bench soak clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit("syncer needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing syncer and its test tools into $(VENV) ..."
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,embedded,report]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# Everything, as CI runs it (lint first: a style or type error fails faster than the suite).
test: lint
	$(BIN)/pytest --durations=10

# The inner loop: everything but the end-to-end tests that start subprocesses.
test-fast: install
	$(BIN)/pytest -m "not slow" -q

lint: install
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix $(SOURCES)
	$(BIN)/ruff format $(SOURCES)

demo: install
	$(BIN)/syncer demo

bench: install
	$(BIN)/python bench/ingest.py

# the daemon under seeded random faults for SOAK_MINUTES (default 10); SOAK_SEED replays a run
soak: install
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

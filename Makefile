# The two newcomer commands are `make demo` and `make test`; each installs what it needs
# into ./.venv first (pinned by constraints.txt), so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: install test lint demo bench clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit("syncer needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing syncer and its test tools into $(VENV) ..."
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,embedded]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check syncer tests migrations bench
	$(BIN)/mypy

demo: install
	$(BIN)/syncer demo

bench: install
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

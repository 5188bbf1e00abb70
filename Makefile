# make test: create .venv if missing, install the project with its test extra, lint, run every test.
# make demo: the same install, then the end-to-end demonstration against a loopback provider.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,dev]'
	touch $(STAMP)

test: $(STAMP) lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check oidc_middleware tests examples
	$(BIN)/ruff format --check oidc_middleware tests examples
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/oidc-middleware demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

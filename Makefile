# make test: create .venv if missing, install the project with its test extra, lint, run every test.
# make demo: the same install, then the end-to-end demonstration against a loopback provider.
# make demo-quay: the real Quay 3.17.4 alone, with the middleware as a filter and with install (needs
# Quay's source trees: OIDC_QUAY_SOURCES or ../shared/quay; installs Quay once into ~/.cache).
# make bench: the benchmark, ratios to one RSA verification measured side by side.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The end-to-end tests' OpenID provider (Node.js): npm ci when node_modules is missing or the lock
# file changed, only where npm exists (without it, those tests skip unless OIDC_E2E_REQUIRED=1).
E2E_STAMP := tests/e2e/node_modules/.installed
E2E_DEPS := $(if $(shell command -v npm 2>/dev/null),$(E2E_STAMP))

.PHONY: test demo demo-quay lint bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,dev]'
	touch $(STAMP)

$(E2E_STAMP): tests/e2e/package.json tests/e2e/package-lock.json
	cd tests/e2e && npm ci --no-audit --no-fund
	touch $(E2E_STAMP)

test: $(STAMP) lint $(E2E_DEPS)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check oidc_middleware tests examples bench
	$(BIN)/ruff format --check oidc_middleware tests examples bench
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/oidc-middleware demo

demo-quay: $(STAMP)
	$(BIN)/oidc-middleware demo --quay

bench: $(STAMP)
	$(BIN)/python bench/bench.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Quickstart: `make demo` and `make test` work on a fresh machine (they set everything up).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: setup demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)
	bash scripts/setup-system.sh
	@# byte-code for the editable sources, as pip writes it for a regular install (the
	@# environment may set PYTHONDONTWRITEBYTECODE; each aq_pp start would recompile them)
	$(PY) -m compileall -q src
	@# build aq_pp's C helper now rather than in the first command that needs it
	$(PY) -c "from ess.aq.native import native_library; native_library()"

demo: setup
	bash scripts/demo.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: setup lint typecheck
	bash scripts/run-pytest.sh $(PYTEST_ARGS)

unit: $(STAMP)
	$(VENV)/bin/pytest -q -m 'not slow' $(PYTEST_ARGS)

bench: setup
	bash benchmarks/run_all.sh

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache

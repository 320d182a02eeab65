# Quickstart: `make demo` and `make test` work on a fresh machine (they set everything up).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
UV_VERSION := 0.13.9

.PHONY: setup demo test test-long lint typecheck imports unit bench clean lock

# Installs from requirements.lock (pinned, made by `make lock`) with uv, a fast installer from
# PyPI: seconds instead of pip's minutes. Progress is printed, so a fresh `make demo` never sits
# silent. Falls back to pip when uv cannot be installed.
$(STAMP): pyproject.toml requirements.lock
	@echo "setup: creating $(VENV) and installing the locked dependencies"
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION) \
	  || echo "setup: uv not available, installing with pip (slower)"
	if [ -x $(VENV)/bin/uv ]; then \
	  $(VENV)/bin/uv pip install --python $(PY) -r requirements.lock \
	  && $(VENV)/bin/uv pip install --python $(PY) --no-deps -e . ; \
	else \
	  $(PY) -m pip install --disable-pip-version-check --progress-bar on -r requirements.lock \
	  && $(PY) -m pip install --disable-pip-version-check --no-deps -e . ; \
	fi
	touch $(STAMP)

# Re-pins every dependency (run after changing pyproject.toml's dependencies).
lock: $(STAMP)
	$(VENV)/bin/uv pip compile pyproject.toml --extra test --python-version 3.11 -o requirements.lock

setup: $(STAMP)
	bash scripts/setup-system.sh
	@# byte-code for the editable sources, as pip writes it for a regular install (the
	@# environment may set PYTHONDONTWRITEBYTECODE; each aq_pp start would recompile them)
	$(PY) -m compileall -q src
	@# and for the installed packages: uv installs without byte-code, and with that variable set
	@# nothing writes it later, so every process (the CLI, workers, a cold aq_pp) compiled numpy,
	@# distributed and more from source at each start (about 1 s of CPU); up to date: ~2 s
	$(PY) -m compileall -q -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
	@# build aq_pp's C helper now rather than in the first command that needs it
	$(PY) -c "from ess.aq.native import native_library; native_library()"

demo: setup
	bash scripts/demo.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The layer and no-cycle contracts of pyproject.toml ([tool.importlinter]).
imports: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache

test: setup lint typecheck imports
	bash scripts/run-pytest.sh $(PYTEST_ARGS)

# The whole suite with the bigger variants (tests marked long) as well.
test-long:
	ESS_LONG=1 $(MAKE) test

unit: $(STAMP)
	$(VENV)/bin/pytest -q -m 'not slow' $(PYTEST_ARGS)

bench: setup
	bash benchmarks/run_all.sh

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache

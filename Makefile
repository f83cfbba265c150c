# Packets at Rest. Every target bootstraps .venv when it is missing or older than its requirements:
# what runs (requirements.txt) for the demo, the servers and the benchmarks; that and the tests'
# and tooling's (requirements-dev.txt) for test, lint, typecheck, format and screenshots.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=
# Test processes of `make test` (pytest-xdist): most of the suite's time is spent waiting on real
# servers it starts (gunicorn, SeaweedFS, Redis, chromium), so two processes nearly halve it even on
# 2 cores. Each file runs whole in one process (its module-scoped servers start once). PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2

.PHONY: help prerequisites venv demo test lint typecheck format serve-node serve-collector filer clean bench bench-load bench-stream screenshots

help:
	@echo "make demo             run node + collector on loopback with demo captures (DEMO_PORTS=19001,19002)"
	@echo "make test             run the whole test suite (in PYTEST_WORKERS=2 processes)"
	@echo "make venv             .venv with what runs only (production); test and lint add requirements-dev.txt"
	@echo "make lint             ruff check and format check, the import layering contract, mypy"
	@echo "make typecheck        mypy with django-stubs"
	@echo "make serve-node       gunicorn, PAR_ROLE=node, port 9002"
	@echo "make serve-collector  gunicorn, PAR_ROLE=collector, port 9001"
	@echo "make bench            the benchmark against the tcpdump pipeline (bench/)"
	@echo "make bench-load       small calls while downloads run, half-sent heads, stream rate (about a minute)"
	@echo "make bench-stream     a large answer's rate in bulk vs record by record vs cat (bench/bench_stream.py)"
	@echo "make screenshots      the web page's pictures in docs/, from its browser test"

# Checked before anything is installed, with a message saying what to install.
prerequisites:
	@if [ -x $(PY) ]; then py=$(PY); else py=$(PYTHON); fi; \
	if ! command -v $$py >/dev/null 2>&1; then \
	  echo "make: $$py not found: Packets at Rest needs Python 3.11 or newer (Debian 12: apt-get install python3 python3-venv; or make PYTHON=python3.12)" >&2; exit 1; fi; \
	if ! $$py -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
	  echo "make: Packets at Rest needs Python 3.11 or newer, $$py is $$($$py -V 2>&1); name another with make PYTHON=python3.12" >&2; exit 1; fi; \
	if [ ! -x $(PY) ] && ! $$py -c 'import ensurepip, venv' 2>/dev/null; then \
	  echo "make: $$py cannot create a virtual environment: install python3-venv (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; fi

$(STAMP): requirements.txt | prerequisites
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

$(DEV_STAMP): requirements.txt requirements-dev.txt | prerequisites
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP) $(DEV_STAMP)

# The project's own modules compiled ahead (__pycache__): the services run as a user that cannot
# write to the code tree, so without them every process (each cron pass of the filer) compiles every
# module it imports again, about a tenth of a second of CPU. Rerun at each upgrade (make venv).
venv: $(STAMP)
	@$(PY) -m compileall -q api collector engine node parsite plugins pcapgen

test: $(DEV_STAMP)
	$(PY) -m pytest $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy

format: $(DEV_STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# DEMO_PORTS=19001,19002: the collector's and the node's ports (default 9001,9002, or free ones).
demo: $(STAMP)
	DEMO_PORTS="$(DEMO_PORTS)" $(PY) -m demo

serve-node: $(STAMP)
	PAR_ROLE=node $(VENV)/bin/gunicorn parsite.wsgi -c gunicorn.conf.py

serve-collector: $(STAMP)
	$(PY) manage.py migrate --noinput
	PAR_ROLE=collector $(PY) manage.py collectstatic --noinput --verbosity 0
	PAR_ROLE=collector $(VENV)/bin/gunicorn parsite.wsgi -c gunicorn.conf.py

filer: $(STAMP)
	PAR_ROLE=node $(PY) manage.py runfiler

screenshots: $(DEV_STAMP)
	PAR_SCREENSHOTS_DIR=docs $(PY) -m pytest tests/collector/test_page_browser.py -q

bench: $(STAMP)
	$(PY) bench/bench.py $(BENCH_ARGS)

bench-load: $(STAMP)
	$(PY) bench/load.py $(LOAD_ARGS)

bench-stream: $(STAMP)
	$(PY) bench/bench_stream.py $(STREAM_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

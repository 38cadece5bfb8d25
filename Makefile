# revicom-dispatch: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test soak lint format schemas sandbox worker flower bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "revicom-dispatch needs Python 3.11+; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The whole pipeline on this machine: Redis, sandbox, a worker pod, Flower, a mixed load.
demo: install
	$(VENV)/bin/revicom-dispatch demo

test: install
	$(PY) -m pytest

# Long runs kept out of `make test`: repeated worker kills under API faults.
soak: install
	$(PY) -m pytest -m slow -s

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Regenerate the published JSON Schemas of the job and outcome formats.
schemas: install
	$(PY) -m tasks.schemas schemas

# A local Revicom Direct API on 127.0.0.1:8080 (token: sandbox-token); Ctrl-C stops it.
sandbox: install
	$(VENV)/bin/revicom-dispatch sandbox

# One worker pod (an OTP node and a bulk node) with the settings from the environment.
worker: install
	$(VENV)/bin/revicom-dispatch worker --loglevel INFO

# Flower for the workers of this environment (REDIS_URL, DISPATCH_KEY_PREFIX) on :5555.
flower: install
	$(VENV)/bin/celery -A worker.app flower --port=5555 --address=127.0.0.1

# Benchmarks: figures, not tests. Results are also written to bench-results/*.json.
bench: install
	$(PY) -m bench.sandbox_throughput
	$(PY) -m bench.pipeline
	$(PY) -m bench.cli_memory

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache

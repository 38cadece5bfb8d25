# revicom-dispatch: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test soak chaos mutate lint format schemas sandbox worker flower bench clean

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

# Long runs kept out of `make test`: repeated worker kills under API faults, and the
# property tests of hostile input with many more examples.
soak: install
	$(PY) -m pytest -m slow -s
	HYPOTHESIS_EXAMPLES=5000 $(PY) -m pytest -q tests/test_hostile_contract.py \
		tests/test_hostile_sandbox.py tests/test_hostile_cli.py tests/test_entry_parsing.py \
		tests/test_hostile_callbacks.py

# The chaos matrix (20,000 SMS + 500 FLASHCALL a scenario, each on its own Redis server):
# kills, outages, a wrong key, Redis restarts, power loss, a full Redis... and its table.
# `make chaos CHAOS=--fast` runs the small scale CI keeps.
chaos: install
	$(PY) -m chaos $(CHAOS)

# Mutation testing (mutmut) of the modules that carry the promise against their fast tests:
# a score per module and every survivor the README does not explain. Kept out of `make test`.
mutate: install
	rm -rf mutants
	$(PY) -m devenv.mutate

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

# Flower for the workers of this environment (REDIS_URL, DISPATCH_KEY_PREFIX) on 127.0.0.1:5555;
# with FLOWER_BASIC_AUTH=user:password in the environment it asks for it (Flower reads it itself,
# so it stays off the command line).
flower: install
	@[ -n "$$FLOWER_BASIC_AUTH" ] || echo "flower: no auth on 127.0.0.1:5555 (local only); set FLOWER_BASIC_AUTH=user:password to require it"
	$(VENV)/bin/celery -A worker.app flower --port=5555 --address=127.0.0.1

# Benchmarks: figures, not tests. Results are also written to bench-results/*.json.
bench: install
	$(PY) -m bench.sandbox_throughput
	$(PY) -m bench.pipeline
	$(PY) -m bench.callback_path
	$(PY) -m bench.rate_limits
	$(PY) -m bench.receiver_ingest
	$(PY) -m bench.cli_memory

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache

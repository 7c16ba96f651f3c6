# One task runner: CI calls `make test` exactly as a person does.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup demo test test-automation lint fmt unit engines engines-setup objectstores-setup bench clean

$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check "uv==0.13.8"
	$(UV) sync --frozen
	@touch $@

# The aggregator's native core (app/meterplane/aggregate/native.py says what it is for;
# build_native.py holds the compiler flags, for this rule and the app image alike).
NATIVE := app/meterplane/aggregate/_native.so
$(NATIVE): app/meterplane/aggregate/_native.c app/meterplane/aggregate/build_native.py $(VENV)/.synced
	CC="$(CC)" $(BIN)/python -m meterplane.aggregate.build_native --out $@

setup: $(VENV)/.synced $(NATIVE)

demo: setup
	$(BIN)/meterplane demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint engines-setup objectstores-setup
	$(BIN)/pytest $(PYTEST_ARGS)

# Kafka broker + Flink connector jars (Maven Central) and the pinned PyFlink venv, cached in .cache/.
engines-setup: setup
	$(BIN)/python -m meterplane.testing.engines setup

# Azurite (npm) and fake-gcs-server (Go module proxy), pinned, cached in .cache/objectstores/.
objectstores-setup: setup
	$(BIN)/python -m meterplane.testing.objectstores setup

# The Automation API against a real Pulumi CLI, built from the Go module proxy on first use
# (about 40 minutes here, cached in .cache/bin): too slow for `make test`.
test-automation: setup
	METERPLANE_PULUMI_CLI_TESTS=1 $(BIN)/pytest -m pulumi_cli tests/rollout $(PYTEST_ARGS)

unit: setup
	$(BIN)/pytest -m "not engines" $(PYTEST_ARGS)

engines: engines-setup
	$(BIN)/pytest -m engines $(PYTEST_ARGS)

bench: setup
	@for b in bench/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache $(NATIVE)

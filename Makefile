# Rein: `make run` starts the bot, `make test` runs every test offline.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test quick soak lint format bench check migrate clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/rein run

# Everything, soak suites included: this is what .ci/run runs.
test: install
	$(BIN)/python -m pytest

# The everyday loop without the slow proof suites, and those suites alone.
quick: install
	$(BIN)/python -m pytest -m 'not soak'

soak: install
	$(BIN)/python -m pytest -m soak

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The autonomy-API benchmark drives load with wrk (Debian's package), so a Python client is
# not the bottleneck; without it the benchmark says so and its ratio means little.
bench: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || true
	$(BIN)/python -m bench.ack_latency
	$(BIN)/python -m bench.autonomy_api
	$(BIN)/python -m bench.approval_delivery
	$(BIN)/python -m bench.timeline_card
	$(BIN)/python -m bench.startup
	$(BIN)/python -m bench.scale

check: install
	$(BIN)/rein check

migrate: install
	$(BIN)/rein migrate

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info

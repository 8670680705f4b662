PYTHON ?= python3
THREADS ?= 2

.PHONY: test test-fast lint format bench

test:  ## the whole suite, slow end-to-end recipe tests included (what CI runs), after setting up what it needs
	bash utils/run_tests.sh

test-fast:  ## unit tests only
	$(PYTHON) -m pytest -m "not slow"

lint:
	$(PYTHON) -m ruff check src tests bench
	$(PYTHON) -m ruff format --check src tests bench
	find egs utils bench -name "*.sh" -print0 | xargs -0 shellcheck -x

format:
	$(PYTHON) -m ruff format src tests bench
	$(PYTHON) -m ruff check --fix src tests bench

bench:  ## speed and memory on CPU (each script's docstring says what it measures)
	$(PYTHON) bench/bench_model.py --threads $(THREADS)
	$(PYTHON) bench/bench_data.py
	$(PYTHON) bench/bench_separate.py
	$(PYTHON) bench/bench_streaming.py --seconds 10

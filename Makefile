# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv and
# install the project (with its dev extras) the first time, so a machine with only Python works.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo up test lint bench chaos clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vigil demo

up: $(STAMP)
	$(BIN)/vigil up

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 3 --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

# Faults (kill -9, SIGSTOP) injected while FD001 units are replayed; a table of what each one cost.
chaos: $(STAMP)
	$(BIN)/python -m bench.bench_failures $(CHAOS_ARGS)

# The one image every app runs from (Dockerfile), tagged with the project's version. Needs a running
# container engine: docker, or podman (CONTAINER_ENGINE=podman).
CONTAINER_ENGINE ?= docker
IMAGE ?= vigil:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
.PHONY: image
image:
	@command -v $(CONTAINER_ENGINE) >/dev/null || { echo "make image: $(CONTAINER_ENGINE) is not installed (install docker or podman, or set CONTAINER_ENGINE)" >&2; exit 1; }
	@$(CONTAINER_ENGINE) info >/dev/null 2>&1 || { echo "make image: $(CONTAINER_ENGINE) is installed but its daemon is not running (start it, or build on a machine where it runs)" >&2; exit 1; }
	$(CONTAINER_ENGINE) build --tag $(IMAGE) .

clean:
	rm -rf $(VENV) .pytest_cache .localdapr

# Two entry points: `make demo` and `make test` (`make test-all` adds the slow tests). Each creates .venv when missing
# and installs the pinned set.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ivtune-installed

# pip does not byte-compile (--no-compile): the commands below write the bytecode of what they import under
# .venv/pycache as they first import it, ~5,500 of the venv's 16,500 files, instead of compiling all of them at
# install (~32 s on 2 cores). They write it even where PYTHONDONTWRITEBYTECODE is set, since without it every Python
# process would compile torch again (9 s became 23 s per process on a 2-core machine); the prefix keeps __pycache__
# folders out of the source tree.
export PYTHONDONTWRITEBYTECODE :=
export PYTHONPYCACHEPREFIX := $(CURDIR)/$(VENV)/pycache

.PHONY: demo test test-all lint install clean

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -c requirements/constraints.txt "torch==2.14.1" "torchvision==0.29.1" -e ".[test,detr,analysis,export,hub]"
	touch $(STAMP)

install: $(STAMP)

# the team's offline DINOv2-S file, when this checkout sits beside ../shared; users pass their own
IVTUNE_WEIGHTS ?= $(wildcard ../shared/weights/dinov2_vits14_imgfocus.safetensors)
export IVTUNE_WEIGHTS

demo: $(STAMP)
	$(BIN)/ivtune demo

# `make test` (CI) tests every path once; `make test-all` adds the `slow` matrix (other families, tasks and flags on
# the same paths, benchmark smokes). loadfile keeps a file on one worker: a module fixture (a trained run, an
# export) is then built once, not once per worker.
PYTEST := $(BIN)/python -m pytest -n 2 --dist loadfile --timeout 600 -q

test: $(STAMP)
	$(BIN)/lint-imports
	$(PYTEST) -m "not slow"

test-all: $(STAMP)
	$(BIN)/lint-imports
	$(PYTEST)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache

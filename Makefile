# Two entry points: `make demo` and `make test` (`make test-all` adds the slow tests). Each creates .venv when missing
# and installs the pinned set.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ivtune-installed

.PHONY: demo test test-all lint install clean

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -c requirements/constraints.txt "torch==2.14.1" "torchvision==0.29.1" -e ".[test,detr,analysis,export,hub]"
	# byte-compile on every core (pip compiles one file at a time: ~35 s more on 2 cores), leaving out what
	# ivtune never imports: the packages' own test suites and the transformers models other than RT-DETR (5,079
	# of 16,538 files, ~10 s; a module left out still imports, compiled in memory). As pip does, files that are
	# not Python 3.11 (torch ships a few 3.12-only ones) are skipped, hence the ignored exit status.
	-$(BIN)/python -m compileall -q -j 0 -x '/tests?/|/transformers/models/(?!auto/|encoder_decoder/|rt_detr)' \
		$(VENV)/lib > /dev/null
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

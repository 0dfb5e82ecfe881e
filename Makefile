# Each target sets up .venv itself (once per change of pyproject.toml), so a fresh clone needs
# only `make gate` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COMPARE_FAIL ?= median:25%

.PHONY: gate smoke accuracy memory test lint baseline train clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[cpu,dev]"
	touch $@

## The gate on the bundled default: every CPU case, compared with the committed baseline.
gate: $(STAMP)
	$(BIN)/pytest perf_tests -m cpu --benchmark-compare --benchmark-compare-fail=$(COMPARE_FAIL)

## One size per model and backend: the quick pre-merge lane (timings reported, not gated).
smoke: $(STAMP)
	$(BIN)/pytest perf_tests -m "smoke and cpu"

## Sensitivity, specificity, accuracy, AUROC of every CPU case vs fp32, baselines/accuracy, floors.
accuracy: $(STAMP)
	$(BIN)/pytest perf_tests -m "accuracy and cpu"

## Peak memory of every CPU case (memray), held to baselines/memory ceilings.
memory: $(STAMP)
	$(BIN)/pytest perf_tests -m "memory and cpu"

## medgate's own tests.
test: $(STAMP)
	$(BIN)/pytest tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Re-measure the CPU matrix and store it as the new baseline (review the diff in the PR).
baseline: $(STAMP)
	$(BIN)/pytest perf_tests -m cpu --benchmark-save=baseline

train: $(STAMP)
	$(BIN)/medgate train

clean:
	rm -rf $(VENV) .tox

# Each target sets up .venv itself (once per change of pyproject.toml), so a fresh clone needs
# only `make gate` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: gate pre-merge nightly smoke latency accuracy memory test lint baseline train report clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[cpu,dev]"
	touch $@

## The gate on the bundled default, the pre-merge lane: one size per model, every backend x
## precision at batch 1 (throughput at batch N is the nightly lane's: it was most of this lane's
## time), judged against the base revision (the merge base with the upstream, or
## $$MEDGATE_BASE) measured side by side in this run; a model whose code, weights, data, engine
## and libraries hash the same on both sides is not measured. The committed baselines when there
## is no base (docs/base.md).
gate: $(STAMP)
	$(BIN)/pytest perf_tests -m "smoke and cpu and not throughput" $$($(BIN)/python -m medgate.base.pick)

pre-merge: gate

## Every CPU case (every size), against the base revision or the baselines: the nightly lane.
nightly: $(STAMP)
	$(BIN)/pytest perf_tests -m cpu $$($(BIN)/python -m medgate.base.pick)

## One size per model and backend against the stored baselines.
smoke: $(STAMP)
	$(BIN)/pytest perf_tests -m "smoke and cpu"

## Latency and stages of every CPU case against this machine's baselines/latency, and budgets.
latency: $(STAMP)
	$(BIN)/pytest perf_tests -m "latency and cpu"

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
	$(BIN)/actionlint

## Re-measure this machine's CPU latency baselines (baselines/latency/<fingerprint>/) and save a
## pytest-benchmark run beside them; review the diff in the PR.
baseline: $(STAMP)
	$(BIN)/pytest perf_tests -m "cpu and latency" --update-baselines --benchmark-save=baseline

train: $(STAMP)
	$(BIN)/medgate train

## Every lane writes medgate-report/ (results.json, report.md, plots/); this rebuilds the report
## of the last run, or merges shards: make report RESULTS="a/results.json b/results.json".
RESULTS ?= medgate-report/results.json
report: $(STAMP)
	$(BIN)/medgate report $(RESULTS)

clean:
	rm -rf $(VENV) .tox

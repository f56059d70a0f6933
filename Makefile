# Everything a fresh machine needs. Each command installs only what it needs:
# `make test` (and lint, bench, ...) the dev set into .venv; `make demo` the core
# plus the demo's extra (torch, scikit-learn, matplotlib, tqdm, dp-accounting) into
# .venv-demo, as a regular (non-editable) install: no pytest, hypothesis or Flower.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_VENV  := .venv-demo
DEMO_PY    := $(DEMO_VENV)/bin/python
DEMO_STAMP := $(DEMO_VENV)/.installed
SOURCES    := $(shell find secagg -name '*.py')

.PHONY: test test-slow test-deploy lint demo demo-dp quickstart bench bench-quick fuzz load clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch is pinned: a CPU build of 2.13.0 is on the machines' disk; an unpinned one pulls GBs.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# the Flower App of examples/flower_app on Flower's deployment engine: a SuperLink and
# SuperNodes on 127.0.0.1 (insecure; TLS + SuperNode auth; process isolation, a node killed)
test-deploy: $(STAMP)
	$(PY) -m pytest -q -m deploy tests/deploy

# ruff (style, imports, bugbear, builtins shadowing) and mypy --strict on the package
lint: $(STAMP)
	$(VENV)/bin/ruff check secagg tests benchmarks examples fuzz
	$(VENV)/bin/mypy

$(DEMO_STAMP): pyproject.toml $(SOURCES)
	$(PYTHON) -m venv $(DEMO_VENV)
	# torch is pinned: a CPU build of 2.13.0 is on the machines' disk; an unpinned one pulls GBs.
	$(DEMO_PY) -m pip install --quiet "torch==2.13.0"
	$(DEMO_PY) -m pip install --quiet ".[demo]"
	touch $(DEMO_STAMP)

# federated training on scikit-learn's digits: plaintext, Paillier, CKKS and BFV side by side.
# Run from /tmp so that the installed package, not the checkout, is what runs.
demo: $(DEMO_STAMP)
	cd /tmp && $(CURDIR)/$(DEMO_PY) -m secagg demo --out $(CURDIR)/results

demo-dp: $(DEMO_STAMP)
	cd /tmp && $(CURDIR)/$(DEMO_PY) -m secagg demo --dp --out $(CURDIR)/results

quickstart: $(STAMP)
	$(PY) examples/quickstart.py

# every benchmark at full size; rewrites the committed benchmarks/results/ (JSON, markdown, figures)
bench: $(STAMP)
	$(PY) benchmarks/bench_core.py --out benchmarks/results
	$(PY) benchmarks/bench_paillier.py --out benchmarks/results
	$(PY) benchmarks/bench_lattice.py --out benchmarks/results
	$(PY) benchmarks/bench_round.py --out benchmarks/results
	$(PY) benchmarks/bench_masks.py --out benchmarks/results

# smaller sizes, tables on stdout only: writes no file
bench-quick: $(STAMP)
	$(PY) benchmarks/bench_core.py --quick
	$(PY) benchmarks/bench_paillier.py --quick
	$(PY) benchmarks/bench_lattice.py --quick
	$(PY) benchmarks/bench_round.py --quick
	$(PY) benchmarks/bench_masks.py --quick

# coverage-guided fuzzing of every loader, 100,000 inputs each (results in fuzz/results.tsv)
fuzz: $(STAMP)
	$(PY) -m pip install --quiet atheris
	rm -f fuzz/results.tsv
	SECAGG_FUZZ_LOG=fuzz/results.tsv $(PY) fuzz/fuzz_loaders.py all -runs=100000 -print_final_stats=1

# an aggregator summing 1,000 client updates of 100k values, streamed from bytes
load: $(STAMP)
	$(PY) benchmarks/load_aggregator.py --out benchmarks/results

clean:
	rm -rf $(VENV) $(DEMO_VENV) .pytest_cache .hypothesis *.egg-info build

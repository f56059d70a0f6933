# Everything a fresh machine needs: `make test` and `make demo` create .venv and install into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test test-slow demo demo-dp quickstart bench bench-quick clean

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

# federated training on scikit-learn's digits: plaintext, Paillier and CKKS side by side
demo: $(STAMP)
	$(PY) -m secagg demo

demo-dp: $(STAMP)
	$(PY) -m secagg demo --dp

quickstart: $(STAMP)
	$(PY) examples/quickstart.py

bench: $(STAMP)
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_paillier.py

bench-quick: $(STAMP)
	$(PY) benchmarks/bench_core.py --quick
	$(PY) benchmarks/bench_paillier.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info

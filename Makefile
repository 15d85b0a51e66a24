# Two commands set everything up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench notebooks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,plot,graph,gurobi,pyomo]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mpqopt demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_peers.py

.PHONY: bench-mckp
bench-mckp: $(STAMP)
	$(PY) benchmarks/bench_mckp.py

.PHONY: bench-iqp
bench-iqp: $(STAMP)
	$(PY) benchmarks/bench_iqp.py

# PuLP (with its bundled CBC) is a benchmark-only dependency, installed on demand here, never a runtime one
.PHONY: bench-baselines
bench-baselines: $(STAMP)
	$(PY) -c "import pulp" 2>/dev/null || $(PY) -m pip install --quiet "pulp>=2.7"
	$(PY) benchmarks/bench_baselines.py

clean:
	rm -rf $(VENV) build *.egg-info

notebooks: $(STAMP)
	$(PY) scripts/run_notebooks.py

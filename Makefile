# foundation_jets: two commands for a physicist (`make demo`, `make test`), plus docs, benchmarks and `make lab`.
# Every target sets itself up first: a .venv with the pinned CPU torch (only if torch is missing)
# and the package installed editable with its extras. Setup is idempotent and quick when done.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.fj-installed

.PHONY: setup demo test docs bench lab clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	@$(PY) -m pip install -q -e ".[dev,lab]" 2>&1 | grep -v "is ignored: it is neither" || true
	@# weaver-core: the original ParT, for the parity test and the benchmark; --no-deps (its pins fight ours)
	@$(PY) -m pip install -q --no-deps weaver-core==0.5.3
	@$(PY) -c "import torch, foundation_jets, nbdev, papermill, jupyterlab, ipywidgets" || { echo "setup failed: see pip output above"; exit 1; }
	@$(PY) -m ipykernel install --sys-prefix --name python3 --display-name python3 >/dev/null
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/fj demo --out runs/demo

# headless chromium (Debian) for the docs site's browser test; installed when missing
CHROMIUM := command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

test: setup
	@$(CHROMIUM)
	@bash tools/run_tests.sh

docs: setup
	@$(CHROMIUM)
	$(PY) tools/build_docs.py

# JupyterLab on the tutorials, in the project's venv (the viewers of foundation_jets.viewers render there);
# --allow-root only when run as root (a container), which Jupyter refuses otherwise
lab: setup
	$(BIN)/jupyter lab --notebook-dir=tutorial $(if $(filter 0,$(shell id -u)),--allow-root)

# every benchmark (CPU-sized modes on a CPU, full modes on CUDA), provenance in each JSON, one summary table
bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf _docs _proc runs .pytest_cache

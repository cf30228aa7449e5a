# reasonlab: `make app` starts the dashboard, `make test` runs every test. Both set up first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0

.PHONY: setup app test bench clean

setup: $(STAMP)

# Idempotent: the venv and install run again only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: an unpinned resolve would pull several GB of CUDA wheels.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

app: setup
	$(BIN)/streamlit run app.py

test: setup
	$(BIN)/python -m pytest -q

BENCHES := $(filter-out bench/common.py bench/__init__.py,$(wildcard bench/*.py))

bench: setup
	@for b in $(BENCHES); do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

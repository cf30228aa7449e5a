# reasonlab: `make app` starts the dashboard, `make test` runs every test. Both set up first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0

.PHONY: setup app test browser bench clean

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

test: setup browser
	$(BIN)/python -m pytest -q

# The browser tests drive Debian's chromium through Playwright (Playwright's own browser download
# needs the network). Installed here when missing and we are root; otherwise those tests skip
# (under CI they fail instead).
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium for the browser tests (apt-get, log in /tmp/reasonlab-apt.log)"; \
		( DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium ) >/tmp/reasonlab-apt.log 2>&1 \
		  || { tail -20 /tmp/reasonlab-apt.log; exit 1; }; \
	fi

BENCHES := $(filter-out bench/common.py bench/__init__.py,$(wildcard bench/*.py))

bench: setup
	@for b in $(BENCHES); do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

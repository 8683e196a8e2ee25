# dainode: `make demo` and `make test` work on a fresh machine (Python 3.11, Node 20, npm).
# Everything is installed inside the repo: .venv/ (Python) and node_modules/ (anvil, solc, Helia).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test demo bench clean-venv help chromium

help:
	@echo "make demo     install what is missing, start a local testnet, run a training task across it, stop it"
	@echo "make test     install what is missing and run the whole test suite"
	@echo "make install  create .venv/ and node_modules/"
	@echo "make bench    run every benchmark (dainode vs Flower, Helia, the paper) and write bench/RESULTS.md"

SLITHER_VENV := .venv-slither

install: $(VENV)/.installed node_modules/.installed $(SLITHER_VENV)/.requirements chromium

# Debian's chromium + chromium-driver drive the dashboard's browser test; installed when missing and we are
# root with apt-get, otherwise that one test is skipped (it says why).
chromium:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get install -y -q chromium chromium-driver || { apt-get update -q && apt-get install -y -q chromium chromium-driver; }; \
	else echo "make install: chromium/chromedriver missing and not root: the dashboard browser test will be skipped"; fi

$(VENV)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "dainode needs Python >= 3.11 (set PYTHON=python3.11)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# slither (static analysis of contracts/, run by the tests) pins web3<8: it gets its own venv.
$(SLITHER_VENV)/.requirements: contracts/tools/slither-requirements.txt
	PYTHON=$(PYTHON) scripts/slither --version

# pytest exits 5 when it collected no test: that must fail, not pass.
test: install
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The demo: scripts/testnet up (anvil + 6 daemons), demo (offers, a 10-round task across the daemons, payouts,
# `task verify` on the relay), and down (by recorded PID) whatever happened; exit 0 only if the task completed,
# verified PASS and reached the accuracy. UP_ARGS / DEMO_ARGS pass options (e.g. DEMO_ARGS="--rounds 3").
# The testnet folder is $DAINODE_TESTNET_DIR (default .testnet/).
UP_ARGS ?=
DEMO_ARGS ?=
demo: install
	@$(PY) scripts/testnet up $(UP_ARGS) && $(PY) scripts/testnet demo $(DEMO_ARGS); rc=$$?; \
	$(PY) scripts/testnet down; exit $$rc

# Flower is a benchmark-only peer in its own venv. flwr 1.42.0 pins certifi>=2026.10.19, newer than the
# registry here holds: its other requirements first (bench/flower-requirements.txt), then flwr without deps.
FLOWER_VENV := bench/.venv-flower

$(FLOWER_VENV)/.installed: bench/flower-requirements.txt
	test -x $(FLOWER_VENV)/bin/python || $(PYTHON) -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/pip install --quiet --upgrade pip
	$(FLOWER_VENV)/bin/pip install --quiet -r bench/flower-requirements.txt
	$(FLOWER_VENV)/bin/pip install --quiet --no-deps flwr==1.42.0
	touch $@

# Benchmarks measure and never assert; they are not part of `make test`.
bench: install $(FLOWER_VENV)/.installed
	FLWR_TELEMETRY_ENABLED=0 $(PY) bench/run_all.py $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV) $(SLITHER_VENV) $(FLOWER_VENV) node_modules

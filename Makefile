# olsim: everything a fresh machine needs goes through these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 CPU: use the wheel lying on this machine's disk when there is one, so pip never
# resolves a multi-GB CUDA build; elsewhere pip fetches torch==2.13.0 by name.
TORCH_LINKS := $(if $(wildcard /opt/wheels/torch-2.13.0*),--find-links /opt/wheels,)

.PHONY: setup system demo run test lint unit integration clean

$(BIN)/olsim: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "olsim needs Python 3.11, got " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_LINKS) torch==2.13.0
	$(BIN)/pip install --quiet $(TORCH_LINKS) -e '.[dev]'
	@touch $@

setup: $(BIN)/olsim

# System tools the tests need: Prometheus + promtool (rule tests, `olsim run --prometheus`),
# Chromium (the report page test) and hey (`olsim bench serve`'s load), from the distribution's
# packages. As root on Debian/Ubuntu this installs them; anywhere else it names what is missing.
SYSTEM_TOOLS := prometheus promtool chromium hey
system:
	@missing=""; for b in $(SYSTEM_TOOLS); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing the Debian packages prometheus, chromium and hey (missing:$$missing)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      prometheus chromium hey >/dev/null || exit 1; \
	  else \
	    echo "olsim: missing$$missing: install them with 'sudo apt-get install prometheus chromium hey'" \
	      "(Debian/Ubuntu), or put Prometheus's, Chromium's and hey's binaries on PATH" >&2; exit 1; \
	  fi; \
	fi

# The README's first command: set up, then run split-digits twice, naive fine-tuning next to replay,
# with the gate off so the served model shows forgetting; out/compare.html puts them side by side.
demo: setup
	$(BIN)/olsim run split-digits --strategy naive replay --gate off --duration 60 --report-dir out/

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy olsim tests conftest.py examples

unit: setup system
	$(BIN)/pytest -q -m "not integration"

integration: setup system
	$(BIN)/pytest -q -m integration

# The README's second command: lint, types, unit tests and doctests, promtool rule tests, integration
# tests on real Ray (and a real Prometheus and Chromium).
test: lint system
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache *.egg-info

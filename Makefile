# olsim: everything a fresh machine needs goes through these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 CPU: use the wheel lying on this machine's disk when there is one, so pip never
# resolves a multi-GB CUDA build; elsewhere pip fetches torch==2.13.0 by name.
TORCH_LINKS := $(if $(wildcard /opt/wheels/torch-2.13.0*),--find-links /opt/wheels,)

.PHONY: setup demo run test lint unit integration clean

$(BIN)/olsim: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "olsim needs Python 3.11, got " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_LINKS) torch==2.13.0
	$(BIN)/pip install --quiet $(TORCH_LINKS) -e '.[dev]'
	@touch $@

setup: $(BIN)/olsim

# The README's first command: set up, then run the default scenario end to end.
demo: setup
	$(BIN)/olsim run split-digits --strategy naive --duration 60 --report-dir out/

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy stream learner serving deploy tests conftest.py

unit: setup
	$(BIN)/pytest -q -m "not integration"

integration: setup
	$(BIN)/pytest -q -m integration

# The README's second command: lint, types, unit tests and doctests, integration tests on real Ray.
test: lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache *.egg-info

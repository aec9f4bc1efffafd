# orl-plugin: the two commands of the README are `make demo` and `make test`.
# `make install` builds .venv once (mmcv's ops take ~7 min the first time); later runs take seconds.
VENV   ?= .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.orl-install-stamp
PYTEST_ARGS ?=
# Two pytest workers (pytest-xdist), a test file per worker: most tests wait on subprocesses and process start-up, so
# two halve the suite on 2 cores (22 min 39 s -> 12 min 41 s), and each file's module fixtures (the evidence tools'
# quick runs) still run once. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2

.PHONY: install test demo lint format clean-install

install: $(STAMP)

# The stamp is re-made whenever the dependency list or the set-up scripts change.
$(STAMP): pyproject.toml tools/install/install.sh tools/install/cxx20.sh
	bash tools/install/install.sh
	@touch $@

# The style checks run first: they take seconds and name the file and line.
test: install lint
	$(PYTHON) -m pytest tests projects -n $(PYTEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS)

demo: install
	$(PYTHON) projects/synthetic_demo/run_demo.py

# Style checks (settings in setup.cfg; the same tools run as .pre-commit-config.yaml's hooks), called directly.
LINT_PATHS ?= orl_plugin tools tests projects configs
lint: install
	$(PYTHON) -m flake8 $(LINT_PATHS)
	$(PYTHON) -m isort --check-only --diff $(LINT_PATHS)
	$(PYTHON) -m yapf --diff --recursive $(LINT_PATHS)

# Rewrites the tree in the lint's style (isort, then yapf).
format: install
	$(PYTHON) -m isort $(LINT_PATHS)
	$(PYTHON) -m yapf --in-place --recursive $(LINT_PATHS)

clean-install:
	rm -f $(STAMP)

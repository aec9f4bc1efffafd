# orl-plugin: the two commands of the README are `make demo` and `make test`.
# `make install` builds .venv once (mmcv's ops take ~7 min the first time); later runs take seconds.
VENV   ?= .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.orl-install-stamp
PYTEST_ARGS ?=

.PHONY: install test demo clean-install

install: $(STAMP)

# The stamp is re-made whenever the dependency list or the set-up scripts change.
$(STAMP): pyproject.toml tools/install/install.sh tools/install/cxx20.sh
	bash tools/install/install.sh
	@touch $@

test: install
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

demo: install
	$(PYTHON) projects/synthetic_demo/run_demo.py

clean-install:
	rm -f $(STAMP)

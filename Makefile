# Two entry points, both self-installing: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --quiet --disable-pip-version-check -c constraints.txt

.PHONY: setup demo test clean

setup: $(VENV)/.installed-all

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0

# Reinstall an extra only when the dependency list changes; the package itself is editable.
# The demo needs [demo] (about a third of [all]); the tests need everything.
$(VENV)/.installed-%: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e '.[$*]'
	touch $@

demo: $(VENV)/.installed-demo
	HF_HUB_OFFLINE=1 $(BIN)/clipping-edge demo --out runs/demo

test: $(VENV)/.installed-all
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs

# Two entry points, both self-installing: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --quiet --disable-pip-version-check -c constraints.txt

.PHONY: setup demo test clean

setup: $(VENV)/.installed

# Reinstall only when the dependency list changes; the package itself is editable.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e '.[all]'
	touch $@

demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/clipping-edge demo --out runs/demo

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs

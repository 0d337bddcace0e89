# Two entry points, both self-installing: `make demo` and `make test`.
# `make test` also installs the JavaScript client's packages (npm ci, from the lockfile) and Chromium (apt)
# for its browser test; where either cannot be installed, those tests skip and say why.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --quiet --disable-pip-version-check -c constraints.txt

.PHONY: setup demo test clean chromium
JS := clients/js

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

# The export-heavy modules run in pytest processes of their own: the converters' and runtimes' native
# libraries (jax, LiteRT, OpenVINO, coremltools) left in one long process crashed a later test at
# garbage collection (SIGSEGV) here.
ISOLATED := tests/test_targets.py tests/test_pretrained.py tests/test_app_classifiers.py tests/test_clip_import.py

$(JS)/node_modules/.installed: $(JS)/package-lock.json
	if command -v npm >/dev/null; then cd $(JS) && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: the JavaScript client's tests will skip"; fi

chromium:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "Chromium could not be installed: the browser test will skip"

test: $(VENV)/.installed-all $(JS)/node_modules/.installed chromium
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q $(addprefix --ignore=,$(ISOLATED))
	for module in $(ISOLATED); do HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q $$module || exit $$?; done

clean:
	rm -rf $(VENV) runs

# `make test` and `make demo` work on a fresh machine: they build .venv from nothing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The emulated NPU is validated against exactly this torch; an unpinned torch pulls a CUDA build.
TORCH_PIN := torch==2.13.0

.PHONY: setup test demo clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	@# the distribution was called "transplant" before it became transplant-npu: drop an old editable install
	-$(PY) -m pip uninstall -q -y transplant >/dev/null 2>&1
	$(PY) -m pip install -q -e '.[test]'
	@command -v shellcheck >/dev/null 2>&1 || { \
	  echo "installing shellcheck (Debian package) for the launch-script tests"; \
	  (apt-get update -qq && apt-get install -y -qq shellcheck) >/dev/null; }
	touch $@

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) -m transplant.demo

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache

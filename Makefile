# `make test` and `make demo` work on a fresh machine: they build .venv from nothing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The emulated NPU is validated against exactly this torch; an unpinned torch pulls a CUDA build.
TORCH_PIN := torch==2.13.0

.PHONY: setup test demo clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	@echo "setup: building $(VENV) (torch 2.13 CPU, transplant, test tools); details in $(VENV)/install.log"
	@$(PYTHON) -m venv $(VENV)
	@# the distribution was called "transplant" before it became transplant-npu: drop an old editable install
	@-$(PY) -m pip uninstall -q -y transplant >/dev/null 2>&1
	@{ $(PY) -m pip install --disable-pip-version-check --upgrade pip && \
	   $(PY) -m pip install --disable-pip-version-check $(TORCH_PIN) && \
	   $(PY) -m pip install --disable-pip-version-check -e '.[test,plot]'; } >$(VENV)/install.log 2>&1 || \
	  { tail -n 40 $(VENV)/install.log; echo "setup: pip failed (full log: $(VENV)/install.log)"; exit 1; }
	@command -v shellcheck >/dev/null 2>&1 || { \
	  echo "setup: installing shellcheck (Debian package) for the launch-script tests"; \
	  (apt-get -o DPkg::Lock::Timeout=300 update -qq && apt-get -o DPkg::Lock::Timeout=300 install -y -qq shellcheck) >>$(VENV)/install.log 2>&1; }
	@touch $@

test: setup
	$(PY) -m pytest -q

demo: setup
	@$(PY) -m transplant.demo

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache

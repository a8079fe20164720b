# One-command entry points. Everything installs from this repo's own files.
SHELL := /bin/bash
PYTHON310 ?= $(shell command -v /root/.pyenv/versions/3.10.13/bin/python || command -v python3.10)
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
# Debian chromium + driver for the browser tests (tests/browser.py reads the same variables).
CHROMIUM ?= /usr/bin/chromium
CHROMEDRIVER ?= /usr/bin/chromedriver

.PHONY: setup browser demo test test-fast bench lock clean help

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/:/'

setup: $(STAMP) browser  ## Create .venv from requirements.lock (only when missing or when the lock changed).

browser:  ## Install Debian's chromium + chromium-driver for the browser tests (root with apt-get only; never fatal).
	@if [ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing chromium and chromium-driver (Debian packages) for the browser tests"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	    || echo "Could not install chromium; the browser tests will be skipped and say why"; \
	else echo "No $(CHROMIUM) or $(CHROMEDRIVER); browser tests will be skipped (install chromium and chromium-driver)"; fi

$(STAMP): requirements.lock pyproject.toml
	@test -n "$(PYTHON310)" || { echo "Python 3.10 is required (TFX 1.15.1); set PYTHON310=/path/to/python3.10"; exit 1; }
	@test -x $(PY) || { echo "Creating $(VENV) with $(PYTHON310)"; $(PYTHON310) -m venv $(VENV); }
	@test -x $(UV) || $(PY) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) pip sync --quiet --compile-bytecode --python $(PY) requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	@touch $(STAMP)

lock:  ## Re-resolve requirements.in into requirements.lock for Python 3.10.
	$(UV) pip compile --quiet --python-version 3.10 requirements.in -o requirements.lock

demo: setup  ## Run the churn pipeline end to end, serve the pushed model and query it.
	$(PY) -m pipeline demo --dataset churn

TEST_WORKERS ?= 2
test: setup  ## Run the whole test suite (unit + end-to-end pipelines) on TEST_WORKERS processes (default 2).
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=30

test-fast: setup  ## Unit tests only (skips the end-to-end pipeline runs).
	$(PY) -m pytest tests -m "not e2e"

bench: setup  ## Benchmarks; results land in bench/results/.
	$(PY) -m bench

clean:  ## Remove pipeline outputs (runs/, serving_models/); keeps .venv.
	rm -rf runs serving_models

# The two commands of the README: `make book` and `make test`. Each sets up
# everything it needs on a fresh machine: the virtualenv, the Python packages
# (torch pinned, installed first), MathJax for offline math and, for the
# browser tests, Debian's chromium.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MATHJAX_VERSION := 3.2.2
MATHJAX := _vendor/mathjax/tex-chtml.js
# -n: nitpicky cross-references; -W: warnings are errors; --keep-going: report them all.
JB_FLAGS := -n -W --keep-going
# Two pytest workers on the 2-core CI machine (--dist loadscope keeps a module's tests,
# the site build's among them, on one worker). Each worker's torch uses one
# thread so the two do not fight over the cores.
PYTEST_FLAGS := -n 2 --dist loadscope --durations=15

.PHONY: help install book test lint serve clean chromium

help:
	@echo "make book   build the book into _build/html (sets everything up first)"
	@echo "make test   lint, every chapter executed once, unit tests, strict site build, browser tests"
	@echo "make serve  serve _build/html on http://127.0.0.1:8000"
	@echo "make clean  remove _build (keeps the virtualenv)"

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$$(grep -E '^torch==' requirements.txt)"
	$(PY) -m pip install --quiet -r requirements.txt -e .
	touch $@

# MathJax 3 from the npm registry, copied into the site by html_extra_path.
$(MATHJAX):
	rm -rf _vendor/mathjax _vendor/.npm && mkdir -p _vendor/.npm
	cd _vendor/.npm && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null
	tar -xzf _vendor/.npm/mathjax-$(MATHJAX_VERSION).tgz -C _vendor/.npm
	mv _vendor/.npm/package/es5 _vendor/mathjax && rm -rf _vendor/.npm

# One torch thread in every kernel, as in `make test`: the pages then print the numbers
# of the robustness page (the experiments pin one thread themselves as well). Failure
# logs go to _build/reports, not into the published site.
book: $(STAMP) $(MATHJAX)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m tools.execute_chapters
	status=0; OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/jupyter-book build $(JB_FLAGS) . || status=$$?; \
	rm -rf _build/reports; if [ -d _build/html/reports ]; then mv _build/html/reports _build/reports; \
	  echo "execution logs: _build/reports"; fi; exit $$status

# Debian's chromium for the browser tests (and a CJK font, so the screenshot shows the
# Chinese titles): installed when missing and we are root; otherwise say how, and let
# the browser tests fail loudly.
BROWSER_PACKAGES := chromium fonts-wqy-zenhei
chromium:
	@if ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -qi wqy; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES) >/dev/null; \
	  else \
	    echo "missing: install with 'sudo apt-get install $(BROWSER_PACKAGES)' (the browser tests need chromium)"; \
	  fi; \
	fi

# mypy reads [tool.mypy] in pyproject.toml: basic mode on lib/qkv.
lint: $(STAMP)
	$(VENV)/bin/ruff check lib tests tools chapters benchmarks conftest.py _ext
	$(VENV)/bin/ruff format --check lib tests tools chapters benchmarks conftest.py _ext
	$(VENV)/bin/mypy

test: $(STAMP) $(MATHJAX) chromium lint
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m tools.execute_chapters
	OMP_NUM_THREADS=1 $(PY) -m pytest $(PYTEST_FLAGS)

serve:
	$(PY) -m http.server --directory _build/html --bind 127.0.0.1 8000

clean:
	rm -rf _build

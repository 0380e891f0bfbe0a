# gencourse: two commands set everything up.
#   make book   build the HTML book  (creates .venv, installs the pinned environment)
#   make test   run the whole test suite (unit tests, notebooks with nbval, grading, book build,
#               every page in headless Chromium: .ci/install-browser installs it)
# Maintainers: make labs (regenerate labs/ from solutions/), make solutions (re-execute and store
# the solutions' outputs), make grade LAB=labs/00_toolkit.ipynb (grade one notebook).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export GENCOURSE_PROFILE ?= fast

.PHONY: book test labs solutions grade clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the pinned environment or the package metadata changes.
$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "The book is at: $(CURDIR)/_build/html/index.html"

test: $(STAMP)
	$(BIN)/gencourse labs --check
	$(BIN)/python -m pytest -p no:cacheprovider -rs tests solutions --nbval --nbval-sanitize-with tests/sanitize.cfg

labs: $(STAMP)
	$(BIN)/gencourse labs

solutions: $(STAMP)
	$(BIN)/gencourse execute solutions/*.ipynb

grade: $(STAMP)
	$(BIN)/gencourse grade $(LAB) --json grade.json --markdown grade.md

clean:
	rm -rf _build $(VENV)

# nncourse: `make lab` to learn, `make test` to check everything. Both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# `make lab` installs the course; `make test` adds the [dev] tools (pytest, nbval, playwright).
STAMP     := $(VENV)/.installed
STAMP_DEV := $(VENV)/.installed-dev
# Notebook tests run on two workers; one notebook's cells always stay on one worker.
JOBS   ?= 2
# PyTorch's CPU wheels: on Linux PyPI's torch is the CUDA build (~18 nvidia-* packages, ~5.5 GB).
# Empty to use the default index only (macOS: PyPI's torch is the CPU build there anyway). If the
# index does not answer within a few seconds it is left out, with a warning (no long pip retries).
TORCH_INDEX ?= $(if $(filter Linux,$(shell uname -s)),https://download.pytorch.org/whl/cpu,)
export TORCH_INDEX  # the tests check what a clean install resolves against it
# Extra arguments for JupyterLab, e.g. LAB_ARGS=--no-browser or LAB_ARGS=--ip=0.0.0.0
LAB_ARGS ?=

.PHONY: lab test test-portability venv venv-dev bench release check-release site clean help

help:
	@echo "make lab      set up .venv and open JupyterLab on the course"
	@echo "make test     set up .venv (with the dev tools) and run every test (unit, notebooks, exercises, browser)"
	@echo "make bench    time every chapter notebook"
	@echo "make test-portability  list checked outputs that change off the pinned floating-point path"
	@echo "make release  regenerate exercises/ from solutions/"
	@echo "make site     build the course as static HTML in build/site/ (offline, stored outputs)"

venv: $(STAMP)
venv-dev: $(STAMP_DEV)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; v = sys.version.split()[0]; sys.version_info >= (3, 11) or sys.exit(f"nncourse needs Python 3.11 or newer, found {v} (set PYTHON=/path/to/python3.11)"); sys.version_info[:2] == (3, 11) or print(f"note: the text was produced with Python 3.11; with {v} some printed numbers may differ")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

# Re-install only when the project's requirements change.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m nncourse.course.install --torch-index "$(TORCH_INDEX)"
	touch $(STAMP)

$(STAMP_DEV): $(STAMP)
	$(BIN)/python -m nncourse.course.install --torch-index "$(TORCH_INDEX)" --extras dev
	touch $(STAMP_DEV)

# The one way JupyterLab is started, here and by the browser test (nncourse/course/lab.py): the
# repository as the server's root, chapters/00_start_here.ipynb opened, port 8888 or a free one.
lab: $(STAMP)
	$(BIN)/python -m nncourse.course.lab $(LAB_ARGS)

test: $(STAMP_DEV)
	$(BIN)/ruff check .
	NNCOURSE_PROGRESS=0 $(BIN)/python -m pytest -n $(JOBS) --dist loadscope --durations=15 --nbval tests chapters solutions

# Not part of `make test`: re-executes every chapter and solution twice (minutes). Run it before
# storing new outputs; NOTEBOOKS=chapters/02_x.ipynb narrows it, PATHS=default,best changes the pair.
PATHS ?= pinned,best
test-portability: $(STAMP)
	$(BIN)/python -m nncourse portability --paths $(PATHS) $(NOTEBOOKS)

bench: $(STAMP)
	$(BIN)/python -m nncourse bench

release: $(STAMP)
	$(BIN)/python -m nncourse release

check-release: $(STAMP)
	$(BIN)/python -m nncourse release --check

# The course as a static site (Sphinx + myst-nb + sphinx-book-theme, from the stored outputs, no
# kernel, no network): build/site/index.html. nncourse/course/site.py says what is on it.
site: $(STAMP_DEV)
	$(BIN)/python -m nncourse site --out build/site

clean:
	rm -rf $(VENV)

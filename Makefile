# nncourse: `make lab` to learn, `make test` to check everything. Both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Notebook tests run on two workers; one notebook's cells always stay on one worker.
JOBS   ?= 2

.PHONY: lab test test-portability venv bench release check-release clean help

help:
	@echo "make lab      set up .venv and open JupyterLab on the course"
	@echo "make test     set up .venv and run every test (unit, notebooks, exercises, browser)"
	@echo "make bench    time every chapter notebook"
	@echo "make test-portability  list checked outputs that change off the pinned floating-point path"
	@echo "make release  regenerate exercises/ from solutions/"

venv: $(STAMP)

# Re-install only when the project's requirements change.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "nncourse needs Python 3.11, found " + sys.version.split()[0] + " (set PYTHON=/path/to/python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# JupyterLab refuses to run as root unless told (containers, CI machines).
ROOTFLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)
	$(BIN)/jupyter lab $(ROOTFLAG) chapters/00_start_here.ipynb

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(JOBS) --dist loadscope --nbval tests chapters solutions

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

clean:
	rm -rf $(VENV)

# rs-repro: `make book` rebuilds every figure and the HTML book, `make test` runs the tests.
# The first call creates .venv and installs the project into it; later calls reuse it, and it is
# rebuilt only when pyproject.toml changes.

PYTHON ?= $(or $(shell command -v python3.11 2>/dev/null),python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= default
CH ?=
P ?=
PYTEST_ARGS ?=
# make test runs the tests in TEST_WORKERS processes (pytest-xdist: one a logical core, at most 4; the smoke book
# is built once for all, tests/conftest.py). TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= logical
# Where the work units run: WORKERS=N local Dask worker processes (WORKERS=0: in the chapter's own process),
# SCHEDULER=ADDRESS an existing cluster. Each unit runs on one CPU thread wherever it runs, so on 2 cores two
# workers are the faster default (13 min 26 s against 18 min 48 s in-process for the cold default book at 5ae95e2;
# README, "What a cold default book costs", for the book of today).
WORKERS ?= 2
SCHEDULER ?=
ENGINE := $(if $(SCHEDULER),--scheduler $(SCHEDULER),$(if $(WORKERS),--workers $(WORKERS)))

export MPLBACKEND := Agg
export PYTHONHASHSEED := 0
export SOURCE_DATE_EPOCH := 1640995200
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.DELETE_ON_ERROR:
.PHONY: setup browser book chapter compute test bench serve clean clean-cache lint

$(STAMP): pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

book: $(STAMP)
	$(BIN)/rs-repro book --profile $(PROFILE) $(ENGINE)

chapter: $(STAMP)
	@test -n "$(CH)" || { echo "usage: make chapter CH=<stem> [PROFILE=default] [P='-p key value']"; \
	  echo "chapters:"; $(BIN)/rs-repro list; exit 2; }
	$(BIN)/rs-repro run $(CH) --profile $(PROFILE) $(ENGINE) $(P)

# A chapter's units, record and tables without Jupyter (a GPU machine, a cluster node): rs-repro compute.
compute: $(STAMP)
	@test -n "$(CH)" || { echo "usage: make compute CH=<stem> [PROFILE=default] [P='-p key value']"; \
	  echo "chapters:"; $(BIN)/rs-repro list; exit 2; }
	$(BIN)/rs-repro compute $(CH) --profile $(PROFILE) $(ENGINE) $(P)

# The browser test's Chromium and chromedriver: installed from Debian's packages when missing and this user
# may (root or passwordless sudo); otherwise the browser test fails once, saying how to install them.
browser:
	@bash tests/install_browser.sh

test: $(STAMP) browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --maxprocesses 4 $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check rs_repro tests bench

serve:
	$(PYTHON) -m http.server --directory _build/html --bind 127.0.0.1 8000

clean:
	rm -rf _build build/runs figures book/chapters

clean-cache:
	rm -rf build/cache

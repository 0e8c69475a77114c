# Inside GPT-2: the two commands a newcomer needs are `make course` and `make test`.
# Everything else here is what they are made of.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.setup-done
JUPYTER_ARGS ?=
PYTEST_ARGS  ?=
export HF_HUB_OFFLINE ?= 1

.PHONY: setup setup-book browsers course test test-fast lint build book benchmarks clean-venv

# Idempotent: a second run finds the stamp newer than its inputs and does nothing.
setup: $(STAMP)
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch pulls gigabytes of CUDA packages.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name inside-gpt2 --display-name "Inside GPT-2" >/dev/null
	touch $(STAMP)

# Opens chapter 1 in JupyterLab and prints its URL (add JUPYTER_ARGS=--no-browser on a server).
course: setup
	$(VENV)/bin/jupyter lab --notebook-dir=course/notebooks $(JUPYTER_ARGS) \
		$$( [ "$$(id -u)" = 0 ] && echo --allow-root ) \
		course/notebooks/$$(ls course/notebooks | grep -m1 '^ch1_.*\.ipynb$$')

# Everything CI runs: the linter, then every test; the browser tests need Chromium (Debian's
# package) and the built book.
test: lint setup-book browsers book
	$(PY) -m pytest $(PYTEST_ARGS)

# The developer's loop: the toolkit's unit tests on small random models (no notebooks, browser or book).
test-fast: setup
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

# ruff, configured in pyproject.toml (the lessons' late imports are allowed there, not by comments).
lint: setup
	$(VENV)/bin/ruff check .

browsers:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		{ apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
		  { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }; }; } || \
		echo "Chromium could not be installed (needs root and Debian's apt): the browser tests will be skipped."

# Regenerate every chapter's notebooks, solutions and book pages from its one source.
build: setup
	$(PY) -m course.build

# The website: Jupyter Book 1.x, its browser assets from the npm registry (no CDN at read time).
setup-book: $(VENV)/.book-done
$(VENV)/.book-done: $(STAMP)
	$(PIP) install --quiet -c constraints.txt -e ".[dev,book]"
	touch $@

book: setup-book
	npm ci --prefix book --no-audit --no-fund --loglevel=error
	$(PY) -m course.build.book

benchmarks: setup
	$(PY) benchmarks/lens_overhead.py
	$(PY) benchmarks/patching.py
	$(PY) benchmarks/sae.py
	$(PY) benchmarks/notebooks.py

clean-venv:
	rm -rf $(VENV)

# cnnlab: `make book` builds the HTML book, `make test` runs every test.
# Both create .venv and install the exact pins on first use.
PY      := .venv/bin/python
STAMP   := .venv/.installed
JB      := .venv/bin/jupyter-book
NOTEBOOKS := book exercises solutions

.PHONY: venv book test test-slow test-all test-fast notebooks chapter-times screenshots record record-cpu record-status clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# The HTML book, from the notebooks' stored outputs, warnings as errors.
book: $(STAMP)
	$(JB) build . -W -n --keep-going

# Two tiers; CI (.ci/run) runs both, `make test-all`.
#
# `make test`, the everyday suite (about 11 minutes on 2 cores): the unit tests
# but the slow-marked ones, on two workers; the exercise and solution notebooks
# re-executed and compared with their stored outputs (nbval); the book built
# from its stored outputs; a check of the built pages' HTML (every page built,
# no blank or transparent figure, alt text, MathJax served by the book, no
# placeholder link, no widget without a static view); and the pages opened
# offline in headless Chromium (typeset formulas, no script error, nothing
# blank, no table squeezed to a word per line). Without Chromium the browser
# checks are skipped with one loud line (never in CI).
#
# `make test-slow` (about 11 minutes): the slow-marked unit tests (full-split
# training runs) and nbval over the book's chapters, whose cells train
# networks live on the CPU (about 10 minutes of the chapters' own time).
PYTEST_WORKERS := -n 2 --dist loadfile
NBVAL := $(PY) -m pytest --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_WORKERS) -m "not slow" tests
	$(NBVAL) exercises solutions
	$(JB) build . -W -n --keep-going --builder html --path-output .cache/book-test
	$(PY) tests/check_built_book.py .cache/book-test/_build/html
	$(PY) tests/browser_check.py .cache/book-test/_build/html

test-slow: $(STAMP)
	$(PY) -m pytest $(PYTEST_WORKERS) -m slow tests
	$(NBVAL) book

test-all: test test-slow

# The unit tests but the slow ones, on one worker: a quick check while editing.
test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow"

# Re-execute every notebook in place, refreshing its stored outputs; the
# chapters are timed on the way (results/chapter_times, table in book/intro.md).
notebooks: $(STAMP)
	$(PY) benchmarks/chapter_times.py --inplace
	.venv/bin/jupyter execute --inplace exercises/*.ipynb solutions/*.ipynb

# Time every chapter without touching the notebooks.
chapter-times: $(STAMP)
	$(PY) benchmarks/chapter_times.py

# Whole-page screenshots of every built page in headless Chromium, offline,
# in light and dark mode (needs Debian's chromium: apt-get install chromium),
# saved under .cache/shots; look at them.
screenshots: book
	$(PY) tests/browser_check.py _build/html --out .cache/shots --tall
	$(PY) tests/browser_check.py _build/html --out .cache/shots --tall --dark

# Full runs of all six models (the report's recipe), saved under results/.
record: $(STAMP)
	$(PY) -m cnnlab compare --seeds 42 43 44 --out results/runs

# The recorded CPU runs (results/runs and results/experiments, the plan in
# cnnlab/plan.py): whatever is missing trains in the background, each run
# resuming from its checkpoint in .cache/checkpoints; runs already recorded
# are skipped. Needs a clean commit (records name it). Log: .cache/record.log.
record-cpu: $(STAMP)
	$(PY) -m cnnlab record run --background

record-status: $(STAMP)
	$(PY) -m cnnlab record status

clean:
	rm -rf _build .cache/book-test

# cnnlab: `make book` builds the HTML book, `make test` runs every test.
# Both create .venv and install the exact pins on first use.
PY      := .venv/bin/python
STAMP   := .venv/.installed
JB      := .venv/bin/jupyter-book
NOTEBOOKS := book exercises solutions

.PHONY: venv book test test-fast notebooks record clean

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

# Unit tests, notebooks re-executed and compared (nbval), then the book build.
test: $(STAMP)
	$(PY) -m pytest tests
	$(PY) -m pytest --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider $(NOTEBOOKS)
	$(JB) build . -W -n --keep-going --builder html --path-output .cache/book-test

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow"

# Re-execute every notebook in place, refreshing its stored outputs.
notebooks: $(STAMP)
	.venv/bin/jupyter execute --inplace book/*.ipynb exercises/*.ipynb solutions/*.ipynb

# Full runs of all six models (the report's recipe), saved under results/.
record: $(STAMP)
	$(PY) -m cnnlab compare --seeds 42 43 44 --out results/runs

clean:
	rm -rf _build .cache/book-test

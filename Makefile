# `make demo` and `make test` each create .venv (with pip) when missing, install the package with
# its test extras under the exact pins of constraints.txt, then run. A stamp file makes the second
# run skip the install until pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.snnprune-installed

.PHONY: demo test smoke docs bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m snnprune demo

# `make test` runs everything, every shipped recipe's smoke run included; `make smoke` runs only
# the smoke runs (`pytest -m "not smoke_heavy"` leaves out those of the large nets).
test: $(STAMP)
	$(PY) -m pytest -q

smoke: $(STAMP)
	$(PY) -m pytest -q tests/test_smoke.py

# The documentation site, offline, into docs/_build/html; warnings are errors (tests/test_docs.py
# runs the same build inside `make test`).
docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

bench: $(STAMP)
	$(PY) bench/overhead.py --reps 15
	$(PY) bench/data.py

clean:
	rm -rf $(VENV) runs .pytest_cache docs/_build

# Everything a fresh machine with python3, gcloud and java needs: `make test`, `make demo`.

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp
PYTEST_ARGS ?=

.PHONY: venv test lint demo clean

venv: $(STAMP)

# Rebuilt when a requirements file changes; the stamp marks a complete install.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

test: venv
	$(VENV)/bin/ruff check mapper handlers tests
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy mapper handlers

demo: venv
	$(PY) -m examples.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

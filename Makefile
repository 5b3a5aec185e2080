# Everything a fresh machine with python3, gcloud and java needs: `make test`, `make demo`.

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp
PYTEST_ARGS ?=

.PHONY: venv test lint demo serve bench clean

venv: $(STAMP)

# Rebuilt when a requirements file changes; the stamp marks a complete install.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The status-page tests drive Debian's Chromium; installed when missing (needs root).
BROWSER := /usr/bin/chromium /usr/bin/chromedriver
$(BROWSER):
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
	  || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver) \
	  || { echo "need Chromium: apt-get install chromium chromium-driver"; exit 1; }

test: venv $(BROWSER)
	$(VENV)/bin/ruff check mapper handlers tests bench examples main.py
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

# ruff (lint + format), mypy, and the import layers (pyproject.toml [tool.importlinter]).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy mapper handlers
	PYTHONPATH=. $(VENV)/bin/lint-imports

demo: venv
	$(PY) -m examples.demo

# Throughput, CPU, RPCs and memory against raw floors measured in the same run, on both
# emulators (docs/performance.md). `make bench BEAM=1` adds Apache Beam's pipeline, from a
# virtualenv of its own (installing apache-beam takes several minutes the first time).
BEAM_VENV := .venv-beam
bench: venv $(if $(BEAM),$(BEAM_VENV)/.stamp)
	$(PY) -m bench.touch $(if $(BEAM),--beam-python $(BEAM_VENV)/bin/python)
	$(PY) -m bench.dump

$(BEAM_VENV)/.stamp:
	test -x $(BEAM_VENV)/bin/python || python3 -m venv $(BEAM_VENV)
	$(BEAM_VENV)/bin/pip install --quiet --disable-pip-version-check "apache-beam[gcp]==2.77.0"
	touch $@

# Datastore emulator + Cloud Tasks emulator + the app on :8080 (auth off); Ctrl-C stops all.
serve: venv
	$(PY) -m mapper.testing.serve --port $(or $(PORT),8080)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Everything a fresh machine with python3, gcloud and java needs: `make test`, `make demo`.

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp
PYTEST_ARGS ?=

.PHONY: venv test lint demo serve bench dist clean

venv: $(STAMP)

# Rebuilt when a requirements file changes; the stamp marks a complete install.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Debian packages the tests drive, installed when missing (needs root): Chromium for the
# status page, redis-server and memcached as an app's ndb global cache.
SYSTEM_PACKAGES := chromium chromium-driver redis-server memcached
SYSTEM_TOOLS := /usr/bin/chromium /usr/bin/chromedriver /usr/bin/redis-server /usr/bin/memcached
$(SYSTEM_TOOLS):
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null \
	  || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES)) \
	  || { echo "need: apt-get install $(SYSTEM_PACKAGES)"; exit 1; }

# Two workers, one per emulator kind (tests/conftest.py groups them): each starts one
# emulator and the two halves run side by side. PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 2
test: venv $(SYSTEM_TOOLS)
	$(VENV)/bin/ruff check mapper handlers tests bench examples main.py
	$(PY) -m pytest -q $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadgroup) tests $(PYTEST_ARGS)

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

# The sdist and the wheel users install into their own app (README: "Use it in your app").
dist: venv
	rm -rf dist
	$(PY) -m build --outdir dist .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build mapper.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

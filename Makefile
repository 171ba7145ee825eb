# JobCare recommender: the two commands a newcomer needs are `make demo` and `make test`.
PY_BOOT ?= python3.11
VENV    := .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
STAMP   := $(VENV)/.installed
WORK    ?= .jobcare
SEED    ?= 7
export OPENBLAS_NUM_THREADS ?= 1
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= true
export FEAST_USAGE ?= False

.PHONY: install browser demo test test-unit test-integration lint bench serve bento clean

$(VENV)/bin/python:
	$(PY_BOOT) -m venv $(VENV)

# Installs the pinned stack from constraints.txt (pip freeze of the tested environment).
$(STAMP): $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) install -q "pip==25.3"
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium for tests/integration/test_ui_browser.py (Playwright drives it; no browser download):
# installed with apt when missing and we are root, else the test says what is missing.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ ! -x $(CHROMIUM) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			chromium fonts-liberation fonts-nanum; \
	elif [ ! -x $(CHROMIUM) ]; then echo "$(CHROMIUM) missing: apt-get install chromium (as root)"; fi

demo: install
	$(VENV)/bin/jobcare demo --config configs/demo.yaml --work $(WORK) --seed $(SEED)

test: install browser
	$(PY) -m pytest -q tests

test-unit: install
	$(PY) -m pytest -q tests/unit

test-integration: install browser
	$(PY) -m pytest -q tests/integration

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(PY) benchmarks/world_generate.py --scales demo national
	$(PY) benchmarks/features.py
	$(PY) benchmarks/candidates.py
	$(PY) benchmarks/train.py
	$(PY) benchmarks/serve_load.py

# The online service on 127.0.0.1:3000 over the demo's world and registry (run `make demo` first).
serve: install
	JOBCARE_CONFIG=$${JOBCARE_CONFIG:-configs/serving.yaml} $(VENV)/bin/bentoml serve serving.service:JobCare --host 127.0.0.1 --port $${PORT:-3000}

bento: install
	$(VENV)/bin/bentoml build .

clean:
	rm -rf $(WORK)

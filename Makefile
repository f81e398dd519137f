# Caregate: `make run` serves the portal with demo data; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# The test suite runs against the real services every machine has (see README).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/caregate
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run idp test lint bench bench-peer-env bench-scale chromium clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Emailed links (registration, Registration Error, "Having trouble logging in?") must point
# at the port actually served; an operator's own CAREGATE_PUBLIC_BASE_URL wins.
run: export CAREGATE_PUBLIC_BASE_URL ?= http://127.0.0.1:$(PORT)
run: $(VENV)/.installed
	mkdir -p $${CAREGATE_VAR_DIR:-var}/static
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_demo
	@echo "Caregate is at http://127.0.0.1:$(PORT)/  (dev outbox: http://127.0.0.1:$(PORT)/dev/outbox/)"
	@echo "Emailed links point at $$CAREGATE_PUBLIC_BASE_URL"
	$(PY) manage.py runserver 127.0.0.1:$(PORT)

# Production mode under gunicorn, with the task worker (deploy/serve.sh, docs/deployment.md):
# PostgreSQL (DATABASE_URL), Redis (REDIS_URL), settings from the environment; prints what
# is missing. serve-local: the same on 127.0.0.1:$(PORT) over http with safe local stand-ins
# (a key kept in var/, codes on the console), against the local PostgreSQL and Redis.
.PHONY: serve serve-local
serve: $(VENV)/.installed
	PY=$(PY) PORT=$(PORT) deploy/serve.sh
serve-local: $(VENV)/.installed
	PY=$(PY) PORT=$(PORT) deploy/serve.sh --local

# The tests' OpenID Connect provider (oidc-provider on the machine's Node.js), from the lock file.
tests/oidc/node_modules/.installed: tests/oidc/package.json tests/oidc/package-lock.json
	npm ci --prefix tests/oidc --no-audit --no-fund
	touch $@

# A stand-in for the operator's identity provider, with demo staff, for the staff LOGIN under
# `make run` (prints the settings to start it with). IDP_PORT, PORT: both ends' ports.
IDP_PORT ?= 9100
idp: $(VENV)/.installed tests/oidc/node_modules/.installed
	$(PY) -m tests.oidc.demo --port $(IDP_PORT) --app-port $(PORT)

# Debian's Chromium for the Playwright tests (Playwright's own browser download is not used).
chromium:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Debian's redis-server and PostgreSQL server binaries for tests/faults, which run private
# servers of their own on spare loopback ports (the machine's services are never stopped).
.PHONY: faults-deps
faults-deps:
	@{ command -v redis-server >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server >/dev/null; }

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check caregate tests bench manage.py
	$(VENV)/bin/ruff format --check caregate tests bench manage.py

test: $(VENV)/.installed tests/oidc/node_modules/.installed chromium faults-deps lint
	mkdir -p var
	$(PY) manage.py makemigrations --check --dry-run
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) PYTEST=$(VENV)/bin/pytest tests/run_parallel.sh

# Benchmarks (bench/README.md): they print figures, they test nothing. Short settings here.
bench: $(VENV)/.installed bench/peer/.venv/.installed
	$(PY) bench/login_cost.py --logins 15 --blocks 3 --warmup 3
	$(PY) bench/signin_throughput.py --duration 5 --start-rate 3 --step 1.6

# The reference site's own virtualenv (django-two-factor-auth), apart from Caregate's.
bench-peer-env: bench/peer/.venv/.installed
bench/peer/.venv/.installed: bench/peer/requirements.txt
	test -x bench/peer/.venv/bin/python || $(PYTHON) -m venv bench/peer/.venv
	bench/peer/.venv/bin/python -m pip install --quiet -r bench/peer/requirements.txt
	touch $@

bench-scale: $(VENV)/.installed
	$(PY) bench/scale.py

clean:
	rm -rf $(VENV) var

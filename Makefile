# Zeckta OTP: `make run` serves the API on http://127.0.0.1:8000, `make test` runs the whole suite.
# `make help` lists every target.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Stamp written after a successful `pip install -r requirements-dev.txt` (the runtime requirements.txt and
# the tests and tools on top): the install is skipped while it is newer than both files.
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv run serve migrate demo worker test fuzz lint typecheck audit format bench profile screenshots

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(INSTALLED): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(INSTALLED) ## Create .venv and install requirements-dev.txt (skipped when unchanged)

# Only written when missing: development mode with fresh secrets (settings refuse to start without
# secrets when DEBUG is off). .env is gitignored.
.env:
	@$(PYTHON) scripts/write_dotenv.py $@

migrate: $(INSTALLED) .env ## Create the PostgreSQL database if DATABASE_URL names a missing one, then migrate
	$(PY) scripts/ensure_database.py
	$(PY) manage.py migrate --noinput

demo: migrate ## Ensure the demo workspace, sender ZECKTA and a fresh demo API key (printed)
	$(PY) manage.py ensure_demo

run: migrate ## Migrate, print a demo key and curl, serve on 127.0.0.1:8000 (plus worker and beat when REDIS_URL is set)
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py ensure_demo
	exec $(PY) scripts/serve.py

serve: $(INSTALLED) .env ## Serve only: the Procfile's web (plus worker and beat when a broker is set)
	exec $(PY) scripts/serve.py

worker: $(INSTALLED) .env ## A Celery worker with beat (needs REDIS_URL or CELERY_BROKER_URL)
	$(VENV)/bin/celery -A zeckta worker -B --loglevel=info

# DATABASE_URL and REDIS_URL default to postgres://postgres@127.0.0.1:5432/zeckta and
# redis://127.0.0.1:6379/15 (zeckta/settings_test.py); set them to use others.
test: $(INSTALLED) ## Run the whole suite against the real PostgreSQL and Redis (PYTEST_ARGS=... to narrow)
	$(VENV)/bin/pytest -q --create-db $(PYTEST_ARGS)

# The same screenshot test `make test` runs, writing its PNGs where the README shows them (needs chromium:
# apt-get install -y chromium).
screenshots: $(INSTALLED) ## Retake the admin screenshots in docs/screenshots (headless Chromium, ~30 s)
	SCREENSHOTS_DIR=docs/screenshots $(VENV)/bin/pytest -q --create-db -p no:cacheprovider cockpit/tests/test_screenshots.py

# A longer, randomised run of the schemathesis and Hypothesis state-machine tests (make test runs them
# bounded and deterministic). FUZZ_MAX_EXAMPLES sets the examples per operation / per machine run.
FUZZ_MAX_EXAMPLES ?= 500
fuzz: $(INSTALLED) ## Fuzz the API from its OpenAPI document and the OTP state machine, longer (~10 min)
	FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES) FUZZ_RANDOM=1 $(VENV)/bin/pytest -q --create-db -p no:cacheprovider \
		otp/tests/test_fuzz.py otp/tests/test_state_machine.py $(PYTEST_ARGS)

lint: $(INSTALLED) ## ruff check, mypy (as typecheck), then the dependency audit
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) scripts/audit_dependencies.py

# mypy reads mypy.ini: the files, the django-stubs and DRF plugins and the settings they load.
typecheck: $(INSTALLED) ## mypy over the apps
	$(VENV)/bin/mypy

audit: $(INSTALLED) ## pip-audit over the installed requirements (says so when no vulnerability database is reachable)
	$(PY) scripts/audit_dependencies.py

format: $(INSTALLED) ## ruff format, then ruff check --fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(INSTALLED) ## Benchmark POST /otp/request and /otp/verify under gunicorn + Celery (loopback, ~1 min)
	$(PY) bench/run.py $(BENCH_ARGS)

profile: $(INSTALLED) ## Statements and time per call of each hot path, in one process (PROFILE_ARGS="--cprofile")
	$(PY) bench/hotpaths.py $(PROFILE_ARGS)

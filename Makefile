# Zeckta OTP: `make run` serves the API on http://127.0.0.1:8000, `make test` runs the whole suite.
# `make help` lists every target.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Stamp written after a successful install of requirements-dev.lock (the runtime requirements.txt and the
# tests and tools on top, every dependency pinned with its hashes): skipped while newer than both locks.
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=
# `make lock` resolves for the oldest Python the service supports, with markers for the others.
LOCK_PYTHON := 3.11
# --no-strip-extras: pip in --require-hashes mode refuses a dependency that asks for a locked package with
# extras (pip-audit wants CacheControl[filecache]) unless the lock names those extras too.
UV_COMPILE := $(VENV)/bin/uv pip compile --quiet --generate-hashes --universal --no-strip-extras --python-version $(LOCK_PYTHON) \
	--custom-compile-command "make lock"

.DEFAULT_GOAL := help
.PHONY: help venv lock services run serve migrate demo worker test fuzz lint typecheck audit format bench profile \
	pumping screenshots

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --require-hashes: pip installs nothing that is not in the lock, byte for byte (a dependency of a dependency
# included). The lock is checked against the .txt files by zeckta/tests/test_requirements_lock.py.
$(INSTALLED): requirements.lock requirements-dev.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	touch $@

venv: $(INSTALLED) ## Create .venv and install requirements-dev.lock (skipped when unchanged)

# After a change to requirements.txt or requirements-dev.txt. The dev lock is constrained by the runtime one,
# so the two never disagree on a shared dependency.
lock: $(INSTALLED) ## Rewrite requirements.lock and requirements-dev.lock (hashes of every dependency) from the .txt files
	$(UV_COMPILE) --output-file requirements.lock requirements.txt
	$(UV_COMPILE) --constraint requirements.lock --output-file requirements-dev.lock requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	touch $(INSTALLED)

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

# Installs (as root, with apt-get) and starts what the suite needs and is missing: Chromium, PostgreSQL, Redis;
# says in one line why when it cannot. .ci/run goes through here too (make test).
services: ## Bring up what `make test` needs: Chromium, PostgreSQL and Redis (scripts/test_services.sh)
	bash scripts/test_services.sh

# DATABASE_URL and REDIS_URL default to postgres://postgres@127.0.0.1:5432/zeckta and
# redis://127.0.0.1:6379/15 (zeckta/settings_test.py); set them to use others.
test: services $(INSTALLED) ## Bring up the services, then run the whole suite against them (PYTEST_ARGS=... to narrow)
	$(VENV)/bin/pytest -q --create-db $(PYTEST_ARGS)

# The same screenshot test `make test` runs, writing its PNGs where the README shows them (Chromium, PostgreSQL
# and Redis brought up as for `make test`).
screenshots: services $(INSTALLED) ## Retake the admin screenshots in docs/screenshots (headless Chromium, ~30 s)
	SCREENSHOTS_DIR=docs/screenshots $(VENV)/bin/pytest -q --create-db -p no:cacheprovider cockpit/tests/test_screenshots.py

# A longer, randomised run of the schemathesis and Hypothesis state-machine tests (make test runs them
# bounded and deterministic). FUZZ_MAX_EXAMPLES sets the examples per operation / per machine run.
FUZZ_MAX_EXAMPLES ?= 500
fuzz: $(INSTALLED) ## Fuzz the API from its OpenAPI document and the OTP state machine, longer (~10 min)
	FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES) FUZZ_RANDOM=1 $(VENV)/bin/pytest -q --create-db -p no:cacheprovider \
		otp/tests/test_fuzz.py otp/tests/test_state_machine.py otp/tests/test_paths_agree.py $(PYTEST_ARGS)

lint: $(INSTALLED) ## ruff format --check, ruff check, mypy (as typecheck), then the dependency audit
	$(VENV)/bin/ruff format --check .
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

# bench/pumping.py: its own database and Redis db (PUMPING_DATABASE_URL, PUMPING_REDIS_URL), both emptied first;
# PUMPING_ARGS="--quick" for about 5 minutes, "--help" for the rest. Exits 1 when a target of issue 18 is missed.
pumping: $(INSTALLED) ## Replay SMS-pumping attacks beside legitimate users against the fraud guard, enforce and shadow (~9 min)
	$(PY) bench/pumping.py $(PUMPING_ARGS)

profile: $(INSTALLED) ## Statements and time per call of each hot path, in one process (PROFILE_ARGS="--cprofile")
	$(PY) bench/hotpaths.py $(PROFILE_ARGS)

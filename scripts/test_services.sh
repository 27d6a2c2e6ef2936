#!/usr/bin/env bash
# What `make test` needs on this machine, brought up before it runs (and by .ci/run through it):
#   - Chromium, for the admin screenshot test (Debian's package, driven by Playwright: no browser download);
#   - PostgreSQL answering at DATABASE_URL's host and port, and Redis at REDIS_URL's.
# Each is installed (apt-get, as root) when it is missing and started when it is not answering; a server on
# another machine is only waited for, never started. When something cannot be had, one line says why (no
# root, no apt-get) and the script exits 1, before a test run that could only fail. Nothing is stopped.
#
# Environment: DATABASE_URL and REDIS_URL (the test settings' defaults when unset), TEST_SERVICES_WAIT_SECONDS
# (60: how long to wait for both to answer).
set -euo pipefail

WAIT_SECONDS="${TEST_SERVICES_WAIT_SECONDS:-60}"
DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/zeckta}"  # as zeckta/settings_test.py
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/15}"

say() { echo "test-services: $*"; }
fail() { echo "test-services: $*" >&2; exit 1; }

# host port of a URL (default port when it names none); python3 is there, `make` needs it for the venv.
host_and_port() {
    python3 -c 'import sys; from urllib.parse import urlsplit; u = urlsplit(sys.argv[1]); print(u.hostname or "127.0.0.1", u.port or sys.argv[2])' "$1" "$2"
}
read -r PG_HOST PG_PORT <<<"$(host_and_port "$DATABASE_URL" 5432)"
read -r REDIS_HOST REDIS_PORT <<<"$(host_and_port "$REDIS_URL" 6379)"

is_local() { case "$1" in 127.0.0.1 | localhost | ::1) return 0 ;; *) return 1 ;; esac }

# Why packages cannot be installed here, or nothing when they can.
why_no_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "not root"
    elif ! command -v apt-get >/dev/null 2>&1; then
        echo "no apt-get"
    fi
}

APT_UPDATED=""
install() {  # Debian packages
    local why
    why="$(why_no_install)"
    [ -z "$why" ] || fail "cannot install $* ($why): install $* yourself, or run this as root on Debian"
    say "installing $*"
    if [ -z "$APT_UPDATED" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

postgres_answers() { pg_isready -h "$PG_HOST" -p "$PG_PORT" -q; }
redis_answers() { [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }

# --- Chromium ---------------------------------------------------------------------------------------
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    install chromium
fi

# --- PostgreSQL -------------------------------------------------------------------------------------
command -v pg_isready >/dev/null 2>&1 || install postgresql-client
if ! postgres_answers && is_local "$PG_HOST"; then
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
        install postgresql
        # A cluster made just now for the tests: let the test user in over loopback without a password, as
        # the settings' URL has none (a cluster that was already there keeps its own rules).
        version="$(ls /etc/postgresql | sort -V | tail -n 1)"
        sed -i '1i host all postgres 127.0.0.1/32 trust' "/etc/postgresql/$version/main/pg_hba.conf"
        pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true  # if it started
    fi
    [ "$(id -u)" = 0 ] || fail "PostgreSQL is not answering on $PG_HOST:$PG_PORT and starting it needs root"
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    if ! pg_ctlcluster --skip-systemctl-redirect "$version" main status >/dev/null 2>&1; then
        say "starting PostgreSQL $version"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start
    fi
fi

# --- Redis ------------------------------------------------------------------------------------------
command -v redis-cli >/dev/null 2>&1 || install redis-tools
if ! redis_answers && is_local "$REDIS_HOST"; then
    command -v redis-server >/dev/null 2>&1 || install redis-server
    say "starting Redis"
    # Nothing kept on disk: the tests start from an empty database each time anyway.
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no
fi

# --- Both answering ---------------------------------------------------------------------------------
for _ in $(seq "$WAIT_SECONDS"); do
    if postgres_answers && redis_answers; then
        exit 0
    fi
    sleep 1
done
postgres_answers || fail "PostgreSQL did not answer on $PG_HOST:$PG_PORT within ${WAIT_SECONDS}s"
redis_answers || fail "Redis did not answer on $REDIS_HOST:$REDIS_PORT within ${WAIT_SECONDS}s"

"""Probes and the scrape (API.md section 12): GET /healthz, /readyz and /metrics.

They answer outside /v1/: no key, no envelope, plain HTTP and any Host. `ProbeMiddleware`, first in
MIDDLEWARE, answers them before anything that would refuse such a request (ALLOWED_HOSTS, the HTTPS
redirect, sessions, CSRF), and before the request-id and access-metric middleware: a probe every few
seconds would otherwise dominate zeckta_http_request_seconds.

/healthz is answered earlier still under gunicorn: `liveness_first` wraps the WSGI application
(zeckta.wsgi), so the probe never reaches Django's request handling, whose `request_started` signal may
test a database connection that had an error (`SELECT 1`, `close_old_connections`): on a database that
hangs, that test would hang the probe with it. Liveness says "this process serves", never "its database
answers": restarting a process does not mend a database, and a restart of every instance during an
outage only adds a wave of reconnections when it ends. That is why the liveness probe must not restart on
a database that hangs, and why it cannot hang on one here: the waits on PostgreSQL are bounded below
gunicorn's worker timeout (DATABASE_CONNECT_TIMEOUT_SECONDS, DATABASE_STATEMENT_TIMEOUT_SECONDS, TCP
keepalives), so a worker blocked in a request is free again within seconds and answers the probe that
waited for it; one that is not (a server frozen on a live host) is aborted by gunicorn's master at
--timeout and replaced. /readyz is what takes an
instance out of rotation while its database is down (docs/deploy.md, Probes, has the probe settings).

/readyz runs its checks in threads of their own against a deadline (HEALTH_CHECK_TIMEOUT_SECONDS), so it
answers in time when a dependency hangs rather than refuses. Probes share a run under way or a second old
(`_run_for`): a frozen database costs one thread per check, not one per probe, and a flood of probes one
connection a second. Each check reports `ok`, `fail`, or `skipped` when the service is not configured to use
that dependency at all (no REDIS_URL, no broker: `make run`'s embedded mode), which is not a failure: the
contract's four keys are always there, and `skipped` says plainly that nothing was checked, where `ok` would
claim a Redis that does not exist.

Not django-health-check, though it has a check for each of ours (the database, Redis, a Celery ping of the
workers, and pending migrations in `health_check.contrib.migrations`): its view answers its own shape
(one key per plugin, human-readable values, or HTML) with 500 when any check fails, where the contract
wants these four keys, 503 on failure, and a `degraded` 200 when only the broker is down (a warning, in its
terms, fails the whole answer unless told otherwise). Its Celery check also asks the workers to answer a
task, which is not what readiness of a web process depends on: a request still succeeds without them, its
SMS waits in the outbox. Mapping its results onto the contract would be more code than the four checks
below, each a few lines with the clients the service already has.
"""

import hmac
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse

from zeckta import metrics
from zeckta.celery import app as celery_app

logger = logging.getLogger(__name__)

OK, FAIL, SKIPPED = "ok", "fail", "skipped"
MIGRATIONS_OK_SECONDS = 60.0  # how long a process trusts "no migration pending" before looking again
RESULT_REUSE_SECONDS = 1.0  # a check's answer serves the probes of the next second too

# The headers a proxy adds for the client it forwards: a loopback REMOTE_ADDR with one of them is a proxy
# on this machine relaying someone else, not a local scraper.
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


# --- Readiness checks ----------------------------------------------------------------------------


def _database_and_migrations() -> dict[str, str]:
    """A fresh connection (what a request would need after a database restart), SELECT 1, then whether a
    migration is pending. Never the request thread's own connection: a hung one must not be shared."""
    connection = _fresh_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return {"database": OK, "migrations": OK if _no_migration_pending(connection) else FAIL}
    finally:
        connection.close()


def _fresh_connection() -> BaseDatabaseWrapper:
    connection = connections.create_connection("default")
    if connection.vendor == "postgresql":
        timeout = max(int(settings.HEALTH_CHECK_TIMEOUT_SECONDS + 0.999), 2)  # libpq counts whole seconds, 2 at least
        options = {**connection.settings_dict.get("OPTIONS", {}), "connect_timeout": timeout}
        connection.settings_dict = {**connection.settings_dict, "OPTIONS": options}
    return connection


_migrations_ok_until = 0.0


def _no_migration_pending(connection: BaseDatabaseWrapper) -> bool:
    global _migrations_ok_until
    if time.monotonic() < _migrations_ok_until:
        return True
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        logger.warning(
            "readyz: %s migration(s) pending, first %s.%s", len(pending), pending[0][0].app_label, pending[0][0].name
        )
        return False
    _migrations_ok_until = time.monotonic() + MIGRATIONS_OK_SECONDS
    return True


@lru_cache(maxsize=2)
def _redis_client(url: str) -> redis.Redis:
    timeout = settings.HEALTH_CHECK_TIMEOUT_SECONDS
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout, retry_on_timeout=False)


def _redis() -> dict[str, str]:
    if not settings.REDIS_URL:
        return {"redis": SKIPPED}
    _redis_client(settings.REDIS_URL).ping()
    return {"redis": OK}


def _broker() -> dict[str, str]:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return {"broker": SKIPPED}  # no broker configured: tasks run in the request
    with celery_app.connection_for_write() as connection:
        connection.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, timeout=settings.HEALTH_CHECK_TIMEOUT_SECONDS
        )
    return {"broker": OK}


# Each runs in its own thread and returns its checks' values; an exception, or no answer in time, fails them.
CHECKS: dict[str, tuple[Callable[[], dict[str, str]], tuple[str, ...]]] = {
    "database": (_database_and_migrations, ("database", "migrations")),
    "redis": (_redis, ("redis",)),
    "broker": (_broker, ("broker",)),
}
# What a readiness answer must hold for the process to take traffic; the broker may be down (degraded):
# requests still succeed, their SMS wait in the outbox.
REQUIRED = ("database", "redis", "migrations")


@dataclass
class _Run:
    """One run of a check, in its own thread; `values` or `error` once it ends."""

    started: float  # time.monotonic()
    thread: threading.Thread = field(init=False)
    ended: float | None = None
    values: dict[str, str] | None = None
    error: str | None = None

    def execute(self, check: Callable[[], dict[str, str]]) -> None:
        try:
            self.values = check()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ended = time.monotonic()


_runs: dict[str, _Run] = {}
_runs_lock = threading.Lock()
_last_failed: set[str] = set()


def readiness() -> tuple[str, dict[str, str]]:
    """("ok" | "degraded" | "fail", {"database": ..., "redis": ..., "broker": ..., "migrations": ...})."""
    now = time.monotonic()
    deadline = now + settings.HEALTH_CHECK_TIMEOUT_SECONDS
    with _runs_lock:
        runs = {name: _run_for(name, check, now) for name, (check, _) in CHECKS.items()}
    results: dict[str, str] = {}
    problems: dict[str, str] = {}  # check -> why it failed, for the log
    for name, run in runs.items():
        run.thread.join(max(deadline - time.monotonic(), 0.0))
        if run.values is not None:
            results.update(run.values)
        elif run.error is not None:
            problems[name] = run.error
        else:
            problems[name] = f"no answer within {settings.HEALTH_CHECK_TIMEOUT_SECONDS} s"
    # A check that failed or did not answer fails every value it gives (the database's: migrations too).
    checks = {key: results.get(key, FAIL) for key in ("database", "redis", "broker", "migrations")}
    _log_changes(checks, problems)
    if any(checks[key] == FAIL for key in REQUIRED):
        return "fail", checks
    return ("degraded" if checks["broker"] == FAIL else "ok"), checks


def _run_for(name: str, check: Callable[[], dict[str, str]], now: float) -> _Run:
    """The run whose answer this probe takes: the one under way or just ended (probes arriving together, or
    within RESULT_REUSE_SECONDS, share it), else a new one. A run still going past its deadline is hung: no
    other is started beside it, the probe waits for it until its own deadline. So a process opens at most
    one database connection a second for probes, however many arrive, and one thread per hung dependency."""
    run = _runs.get(name)
    if run is not None and (run.ended is None or now - run.ended < RESULT_REUSE_SECONDS):
        return run
    run = _Run(started=now)
    run.thread = threading.Thread(target=run.execute, args=(check,), name=f"readyz-{name}", daemon=True)
    run.thread.start()
    _runs[name] = run
    return run


def _log_changes(checks: dict[str, str], problems: dict[str, str]) -> None:
    """A line when a check starts or stops failing, not one every probe."""
    failed = {key for key, value in checks.items() if value == FAIL}
    with _runs_lock:
        for key in sorted(failed - _last_failed):
            reason = next((problem for name, problem in problems.items() if key in CHECKS[name][1]), "pending")
            logger.warning("readyz: %s check failing: %s", key, reason)
        for key in sorted(_last_failed - failed):
            logger.info("readyz: %s check ok again", key)
        _last_failed.clear()
        _last_failed.update(failed)


# --- Views ---------------------------------------------------------------------------------------


LIVENESS_PATH = "/healthz"
LIVENESS_BODY = json.dumps({"status": "ok"}).encode()


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process serves requests. Touches no dependency."""
    return HttpResponse(LIVENESS_BODY, content_type="application/json")


def liveness_first(application: Callable[..., Any]) -> Callable[..., Any]:
    """The WSGI application, with GET and HEAD /healthz answered before it (see the module's docstring);
    any other method goes on to ProbeMiddleware's 405."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") != LIVENESS_PATH or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return application(environ, start_response)
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        start_response("200 OK", [*headers, ("Content-Length", str(len(LIVENESS_BODY)))])
        return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [LIVENESS_BODY]

    return serve


def readyz(request: HttpRequest) -> HttpResponse:
    status, checks = readiness()
    response = JsonResponse({"status": status, "checks": checks}, status=503 if status == "fail" else 200)
    # Django would log each 503 of a probe polled every few seconds; _log_changes says when it starts and ends.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def metrics_view(request: HttpRequest) -> HttpResponse:
    refusal = _metrics_refusal(request)
    if refusal is not None:
        return refusal
    body, content_type = metrics.scrape()
    return HttpResponse(body, content_type=content_type)


def _metrics_refusal(request: HttpRequest) -> HttpResponse | None:
    """With METRICS_TOKEN: its Bearer header or 401. Without, and DEBUG off: loopback clients only (403)."""
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        response = HttpResponse(
            "Unauthorized: send Authorization: Bearer $METRICS_TOKEN\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if settings.DEBUG or _is_local_client(request):
        return None
    return HttpResponse(
        "Forbidden: set METRICS_TOKEN to scrape from another machine\n",
        status=403,
        content_type="text/plain; charset=utf-8",
    )


def _is_local_client(request: HttpRequest) -> bool:
    if any(header in request.META for header in FORWARDING_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": healthz,
    "/readyz": readyz,
    "/metrics": metrics_view,
}


class ProbeMiddleware:
    """Answers the probe paths itself, before any other middleware (see the module's docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = PROBES.get(request.path_info)
        if view is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response = HttpResponse(
                json.dumps({"status": "method not allowed"}), status=405, content_type="application/json"
            )
            response["Allow"] = "GET, HEAD"
            return response
        response = view(request)
        response["Cache-Control"] = "no-store"
        return response

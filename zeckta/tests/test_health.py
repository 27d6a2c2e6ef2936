"""GET /healthz, /readyz and /metrics (API.md section 12): reachable by a probe over plain HTTP with any Host,
no key and no envelope; /readyz says which dependency fails, in time even when one hangs; /metrics only
for its token, or for loopback clients when there is none."""

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from wsgiref.util import setup_testing_defaults

import pytest
from django.core.signals import request_started
from django.db import connection, connections

from zeckta import health
from zeckta.testing import SilentServer, free_port, hung_database, in_a_thread_of_its_own, wait_for

pytestmark = pytest.mark.django_db

PROBES = ("/healthz", "/readyz", "/metrics")
ALL_OK = {"database": "ok", "redis": "ok", "broker": "ok", "migrations": "ok"}


@pytest.fixture
def production(settings) -> None:
    """DEBUG off, HTTPS required, and a Host list the probes' requests are not on."""
    settings.DEBUG = False
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["otp.example.com"]
    settings.METRICS_TOKEN = ""


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.stop()
    # The checks it held up end once it hangs up; a later probe must not find them still running.
    assert wait_for(lambda: not any(run.thread.is_alive() for run in health._runs.values()), timeout=30)


@pytest.fixture(autouse=True)
def _checked_afresh(monkeypatch) -> None:
    """No answer of an earlier test's checks is reused (nor the migrations' minute of trust)."""
    monkeypatch.setattr(health, "_migrations_ok_until", 0.0)
    monkeypatch.setattr(health, "_runs", {})


def readyz(client) -> tuple[int, dict]:
    response = client.get("/readyz", HTTP_HOST="10.0.0.7:8000")
    return response.status_code, response.json()


@pytest.mark.parametrize("path", PROBES)
def test_a_probe_needs_no_https_no_known_host_and_no_key(client, production, path):
    response = client.get(path, HTTP_HOST="10.0.0.7:8000")  # plain HTTP, a pod's address as Host
    assert response.status_code == 200, response.content
    assert "success" not in response.content.decode()  # no envelope
    assert response["Cache-Control"] == "no-store"


def test_healthz_says_ok_and_touches_nothing(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


def test_readyz_is_ok_when_every_dependency_answers(client, production):
    assert readyz(client) == (200, {"status": "ok", "checks": ALL_OK})


def test_without_redis_and_broker_their_checks_are_skipped_not_failed(client, settings):
    settings.REDIS_URL = ""
    settings.CELERY_TASK_ALWAYS_EAGER = True  # `make run` without services: tasks run in the request
    assert readyz(client) == (
        200,
        {"status": "ok", "checks": {"database": "ok", "redis": "skipped", "broker": "skipped", "migrations": "ok"}},
    )


def test_a_broker_down_alone_is_degraded_not_failed(client, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens
    assert readyz(client) == (200, {"status": "degraded", "checks": {**ALL_OK, "broker": "fail"}})


def test_redis_down_fails_readiness(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    assert readyz(client) == (503, {"status": "fail", "checks": {**ALL_OK, "redis": "fail"}})


def test_a_hung_redis_fails_readiness_in_time(client, settings, silent_server):
    settings.REDIS_URL = settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{silent_server.port}/0"
    started = time.monotonic()
    status, body = readyz(client)
    assert (status, body["checks"]["redis"], body["checks"]["broker"]) == (503, "fail", "fail")
    assert time.monotonic() - started < settings.HEALTH_CHECK_TIMEOUT_SECONDS + 1.0  # a bound, not a timing


def test_a_hung_database_fails_readiness_in_time_and_is_not_asked_again_while_it_hangs(
    client, settings, silent_server, monkeypatch
):
    hung = {**connections.settings["default"], "HOST": "127.0.0.1", "PORT": str(silent_server.port)}
    monkeypatch.setitem(connections.settings, "default", hung)
    for _ in range(2):
        started = time.monotonic()
        assert readyz(client) == (
            503,
            {"status": "fail", "checks": {**ALL_OK, "database": "fail", "migrations": "fail"}},
        )
        assert time.monotonic() - started < settings.HEALTH_CHECK_TIMEOUT_SECONDS + 1.0
    assert len(silent_server.accepted) == 1  # the second probe found the first check still hung


@pytest.mark.django_db(transaction=True)
def test_a_pending_migration_fails_readiness(client):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, app, name, applied FROM django_migrations WHERE app = 'otp' ORDER BY id DESC LIMIT 1"
        )
        row = cursor.fetchone()
        cursor.execute("DELETE FROM django_migrations WHERE id = %s", [row[0]])
    try:
        assert readyz(client) == (503, {"status": "fail", "checks": {**ALL_OK, "migrations": "fail"}})
    finally:
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO django_migrations (id, app, name, applied) VALUES (%s, %s, %s, %s)", row)
    health._runs.clear()  # the next probe a second later, past the reuse of this answer
    assert readyz(client)[0] == 200


# --- /metrics ------------------------------------------------------------------------------------


def test_metrics_are_prometheus_text(client, production):
    response = client.get("/metrics")
    assert response["Content-Type"].startswith("text/plain; version=")
    text = response.content.decode()
    for name in (
        "zeckta_otp_requests_total",
        "zeckta_otp_verifications_total",
        "zeckta_sms_total",
        "zeckta_sms_units_total",
        "zeckta_rate_limited_total",
        "zeckta_webhook_deliveries_total",
        "zeckta_sms_send_seconds",
        "zeckta_http_request_seconds",
        "zeckta_outbox_oldest_seconds",
        "zeckta_outbox_pending",
    ):
        assert f"# TYPE {name} " in text, name


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_without_a_token_loopback_clients_may_scrape(client, production, address):
    assert client.get("/metrics", REMOTE_ADDR=address).status_code == 200


@pytest.mark.parametrize(
    "meta",
    [
        {"REMOTE_ADDR": "10.0.0.9"},
        {"REMOTE_ADDR": "203.0.113.5", "HTTP_X_FORWARDED_FOR": "127.0.0.1"},  # a header proves nothing
        {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.5"},  # a proxy on this machine relaying
        {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_REAL_IP": "203.0.113.5"},
    ],
)
def test_without_a_token_other_clients_are_refused(client, production, meta):
    response = client.get("/metrics", **meta)
    assert response.status_code == 403
    assert b"zeckta_" not in response.content


def test_with_debug_on_and_no_token_anyone_may_scrape(client, settings):
    settings.DEBUG, settings.METRICS_TOKEN = True, ""
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.9").status_code == 200


@pytest.mark.parametrize("debug", [False, True])
def test_with_a_token_only_its_bearer_may_scrape_from_anywhere(client, settings, debug):
    settings.DEBUG, settings.METRICS_TOKEN = debug, "a-metrics-token-of-thirty-two-chars!"
    for authorization in (
        None,
        "Bearer wrong",
        "Basic a-metrics-token-of-thirty-two-chars!",
        "Bearer a-metrics-token-of-thirty-two-chars",
    ):
        extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
        response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", **extra)
        assert response.status_code == 401, authorization
        assert response["WWW-Authenticate"].startswith("Bearer")
    response = client.get(
        "/metrics", REMOTE_ADDR="10.0.0.9", HTTP_AUTHORIZATION="Bearer a-metrics-token-of-thirty-two-chars!"
    )
    assert response.status_code == 200
    assert b"# TYPE zeckta_otp_requests_total counter" in response.content


def test_a_scrape_survives_a_database_that_is_down(client, production, monkeypatch):
    def down() -> None:
        raise ConnectionError("the database is down")

    monkeypatch.setattr("zeckta.metrics._outbox_reader", down)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"zeckta_outbox_pending" not in response.content
    assert b"# TYPE zeckta_http_request_seconds histogram" in response.content


def test_probes_arriving_together_share_one_check(client, settings, silent_server, monkeypatch):
    hung = {**connections.settings["default"], "HOST": "127.0.0.1", "PORT": str(silent_server.port)}
    monkeypatch.setitem(connections.settings, "default", hung)
    statuses: list[int] = []
    probes = [threading.Thread(target=lambda: statuses.append(readyz(client)[0])) for _ in range(4)]
    for probe in probes:
        probe.start()
    for probe in probes:
        probe.join(timeout=10)
    assert statuses == [503] * 4
    assert len(silent_server.accepted) == 1  # one connection attempt for the four of them


# --- A database that hangs ------------------------------------------------------------------------


def test_healthz_answers_while_the_database_hangs(client, silent_server, monkeypatch):
    hung_database(monkeypatch, silent_server)
    started = time.monotonic()
    response = in_a_thread_of_its_own(lambda: client.get("/healthz"))
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert time.monotonic() - started < 1.0  # no connection attempt to wait for (a bound, not a timing)
    assert silent_server.accepted == []


def _wsgi_get(application: Callable[..., Iterable[bytes]], path: str, method: str = "GET") -> tuple[str, dict, bytes]:
    environ: dict[str, object] = {"REQUEST_METHOD": method, "PATH_INFO": path}
    setup_testing_defaults(environ)
    answered: dict[str, object] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
        answered.update(status=status, headers=dict(headers))

    body = b"".join(application(environ, start_response))
    return str(answered["status"]), dict(answered["headers"]), body  # type: ignore[call-overload]


def test_under_gunicorn_healthz_never_enters_djangos_request_handling():
    """Django's request_started closes or tests (SELECT 1) a connection that had an error: on a hung database
    that test would hang. zeckta.wsgi answers GET and HEAD /healthz before it."""
    from zeckta.wsgi import application

    started: list[object] = []
    receiver = lambda **kwargs: started.append(kwargs)  # noqa: E731
    request_started.connect(receiver)
    try:
        status, headers, body = _wsgi_get(application, "/healthz")
        assert (status, json.loads(body)) == ("200 OK", {"status": "ok"})
        assert headers["Cache-Control"] == "no-store" and headers["Content-Type"] == "application/json"
        assert _wsgi_get(application, "/healthz", "HEAD")[:2] == ("200 OK", headers)
        assert started == []
        assert _wsgi_get(application, "/healthz", "POST")[0].startswith("405")  # Django's ProbeMiddleware
        assert len(started) == 1
    finally:
        request_started.disconnect(receiver)

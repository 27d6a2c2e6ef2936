"""A database that hangs (accepts connections, never answers) or a statement that waits past its limit: a /v1/
request answers 503 SERVICE_UNAVAILABLE in the envelope, with Retry-After, well inside gunicorn's worker
timeout (30 s), instead of gunicorn killing the worker and answering its own 500 page."""

import http.client
import json
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from django.conf import settings
from django.db import connections

from otp.models import OtpSession, SmsMessage
from otp.tests.helpers import REQUEST_URL, request_otp
from otp.tests.processes import WebProcess, serves_http
from zeckta.errors import DatabaseUnavailable
from zeckta.testing import DEST, SilentServer, assert_api_error, hung_database, in_a_thread_of_its_own, wait_for


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.stop()


def assert_database_unavailable(response) -> None:
    body = assert_api_error(response, status=503, code="SERVICE_UNAVAILABLE")
    assert body["message"] == DatabaseUnavailable.default_message
    assert response["Retry-After"] == str(DatabaseUnavailable.retry_after_seconds)
    assert "Traceback" not in response.content.decode()


@pytest.mark.django_db
def test_a_request_on_a_hung_database_answers_503_within_the_connect_timeout(api, silent_server, monkeypatch):
    hung_database(monkeypatch, silent_server, connect_timeout_seconds=2)
    started = time.monotonic()
    response = in_a_thread_of_its_own(lambda: request_otp(api, DEST))
    elapsed = time.monotonic() - started
    assert_database_unavailable(response)
    assert len(silent_server.accepted) >= 1  # it tried the hung server, and gave up
    assert elapsed < 2 + 3.0  # the connect timeout, far inside gunicorn's 30 s (a bound, not a timing)
    assert not OtpSession.objects.exists() and not SmsMessage.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_statement_held_past_the_statement_timeout_answers_503_and_writes_nothing(api, monkeypatch):
    """The limit travels in the connection's startup options (settings: DATABASE_STATEMENT_TIMEOUT_SECONDS).
    Another session locks the sessions table; the request's statement waits for it until the server
    cancels it."""
    default = connections.settings["default"]
    assert "-c statement_timeout=10000" in default["OPTIONS"]["options"]  # the shipped 10 s
    options = {**default["OPTIONS"], "options": "-c statement_timeout=500"}  # 0.5 s: a short test
    monkeypatch.setitem(connections.settings, "default", {**default, "OPTIONS": options})
    db = settings.DATABASES["default"]
    locked, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with psycopg.connect(
            dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"], password=db.get("PASSWORD") or None
        ) as holder:
            holder.execute("LOCK TABLE otp_otpsession IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(timeout=30)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert locked.wait(timeout=10)
        started = time.monotonic()
        response = in_a_thread_of_its_own(lambda: request_otp(api, DEST))
        elapsed = time.monotonic() - started
    finally:
        release.set()
        holder.join(timeout=10)
    assert_database_unavailable(response)
    assert elapsed < 0.5 + 3.0  # a bound, not a timing
    assert not OtpSession.objects.exists() and not SmsMessage.objects.exists()
    assert request_otp(api, DEST).status_code == 200  # the lock gone, the same request goes through


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_under_gunicorn_a_hung_database_gets_the_envelope_not_the_worker_timeout_and_healthz_answers(
    silent_server,
):
    """One sync worker, its database a host that never answers: the API request is answered 503 in the
    envelope once the connect timeout passes (not gunicorn's HTML 500 at its 30 s worker timeout), and a
    liveness probe that arrived meanwhile is answered as soon as the worker is free."""
    web = WebProcess(
        redis_url=settings.REDIS_URL,
        workers=1,
        extra_env={
            "DATABASE_URL": f"postgres://zeckta@127.0.0.1:{silent_server.port}/zeckta",
            "DATABASE_CONNECT_TIMEOUT_SECONDS": "2",
        },
    )
    try:
        web.wait_ready()
        answers: dict[str, tuple[int, dict[str, str], bytes, float]] = {}

        def call(name: str, method: str, path: str, headers: dict[str, str]) -> None:
            started = time.monotonic()
            connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=40)
            try:
                connection.request(
                    method,
                    path,
                    body=b'{"dest": "+233202007745"}' if method == "POST" else None,
                    headers={"Host": "localhost", **headers},
                )
                response = connection.getresponse()
                answers[name] = (
                    response.status,
                    dict(response.getheaders()),
                    response.read(),
                    time.monotonic() - started,
                )
            finally:
                connection.close()

        api = threading.Thread(
            target=call,
            args=(
                "api",
                "POST",
                REQUEST_URL,
                {
                    "X-Forwarded-Proto": "https",
                    "Authorization": "Bearer zk_live_" + "a" * 43,
                    "Content-Type": "application/json",
                },
            ),
        )
        api.start()
        assert wait_for(lambda: silent_server.accepted, timeout=10)  # the worker is now waiting on the database
        probe = threading.Thread(target=call, args=("probe", "GET", "/healthz", {}))
        probe.start()
        api.join(timeout=40)
        probe.join(timeout=40)
    finally:
        web.stop()
    status, headers, body, elapsed = answers["api"]
    assert status == 503, body
    assert json.loads(body)["code"] == "SERVICE_UNAVAILABLE" and headers["Retry-After"] == "5"
    assert elapsed < 2 + 5.0  # the connect timeout, far from gunicorn's 30 s (a bound, not a timing)
    status, headers, body, elapsed = answers["probe"]
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    assert elapsed < 2 + 5.0


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_request_gunicorn_aborts_at_its_worker_timeout_still_gets_the_envelope(silent_server):
    """The one wait no time limit ends (here a connect with no timeout at all, as a reply that never comes
    from a paused server would be): gunicorn aborts the worker at --timeout, and the client gets 503 in the
    envelope with Retry-After, not gunicorn's HTML 500; the master starts a fresh worker."""
    web = WebProcess(
        redis_url=settings.REDIS_URL,
        workers=1,
        extra_args=("--timeout", "2"),
        extra_env={
            "DATABASE_URL": f"postgres://zeckta@127.0.0.1:{silent_server.port}/zeckta?connect_timeout=0",
        },
    )
    try:
        web.wait_ready()
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=40)
        connection.request(
            "GET",
            "/v1/messaging/otp/0190a8d2-7b7c-7cc3-8f64-2b1e1c5d9a10",
            headers={
                "Host": "localhost",
                "X-Forwarded-Proto": "https",
                "Authorization": "Bearer zk_live_" + "a" * 43,
            },
        )
        response = connection.getresponse()
        body, elapsed = response.read(), time.monotonic() - started
        connection.close()
        assert response.status == 503, body
        assert response.getheader("Content-Type") == "application/json"
        assert response.getheader("Retry-After") == "5"
        envelope = json.loads(body)
        assert (envelope["success"], envelope["code"], envelope["data"]) == (False, "SERVICE_UNAVAILABLE", None)
        assert envelope["requestId"] == response.getheader("X-Request-ID") and envelope["requestId"]
        assert 2 <= elapsed < 2 + 10.0  # gunicorn's timeout, then its next check (a bound, not a timing)
        assert wait_for(lambda: serves_http(web.port), timeout=20)  # a fresh worker serves
        assert "WORKER TIMEOUT" in web.output()
    finally:
        web.stop()

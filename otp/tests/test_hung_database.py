"""A database that hangs (accepts connections, never answers) or a statement that waits past its limit: a /v1/
request answers 503 SERVICE_UNAVAILABLE in the envelope, with Retry-After, well inside gunicorn's worker
timeout (30 s), instead of gunicorn killing the worker and answering its own 500 page."""

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from django.conf import settings
from django.db import connections

from otp.models import OtpSession, SmsMessage
from otp.tests.helpers import request_otp
from zeckta.errors import DatabaseUnavailable
from zeckta.testing import DEST, SilentServer, assert_api_error, hung_database, in_a_thread_of_its_own


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

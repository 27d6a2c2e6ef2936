"""Faults injected into real processes: a worker SIGKILLed in the middle of a send, and PostgreSQL
connections terminated under the API (before and in the middle of a request's transaction).
"""

import json
import logging
import re
import threading
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from django.conf import settings
from django.db import close_old_connections, connection
from django.db.utils import OperationalError
from django.test import RequestFactory
from django.utils import timezone

from otp.delivery import sms_requeue_stale
from otp.models import OtpSession, SmsMessage
from otp.tests.helpers import REQUEST_URL, request_otp, verify
from senders.tests.fake_gateway import Answer
from workspaces.models import LedgerEntry, Workspace
from zeckta.api.middleware import ApiErrorMiddleware
from zeckta.errors import DatabaseUnavailable
from zeckta.testing import DEST, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

WAIT_SECONDS = 20  # an upper bound for polling, not a timing assertion
DB_UNAVAILABLE_MESSAGE = DatabaseUnavailable.default_message


def assert_service_unavailable(response) -> dict:
    assert response.status_code == 503, response.content
    body = response.json()
    assert body == {
        "success": False,
        "message": DB_UNAVAILABLE_MESSAGE,
        "code": "SERVICE_UNAVAILABLE",
        "data": None,
        "requestId": response["X-Request-ID"],
    }
    assert response["Retry-After"] == str(DatabaseUnavailable.retry_after_seconds)
    assert "Traceback" not in response.content.decode()
    return body


def assert_every_session_has_its_sms() -> None:
    """No half-written request: a session without its outbox row, or an outbox row without its session."""
    assert not OtpSession.objects.filter(sms_messages__isnull=True).exists()
    assert SmsMessage.objects.count() == OtpSession.objects.count()


# --- 1. The worker dies in the middle of a send -------------------------------------------------


def test_a_worker_killed_mid_send_is_resent_by_the_sweeper_with_the_same_reference(
    fake_gateway, broker_queue, start_worker, api
):
    """At-least-once delivery with an idempotent `reference` is the guarantee, not exactly-once.

    The worker is SIGKILLed while it waits for the provider's answer: whether the first call reached the
    provider is unknowable to us (here it did). The outbox row tells the truth (`processing`, one
    attempt, claimed), and once its lease is over the sweeper has it sent again with the same
    `reference` (the message's public id), which a real provider uses to drop the duplicate.
    """
    hold = threading.Event()
    fake_gateway.answer(Answer(hold=hold))  # the first call hangs until `hold` is set
    lease = str(settings.SMS_PROCESSING_LEASE_SECONDS)
    # An HTTP timeout far above the wait below: the worker is still inside the call when it is killed.
    first = start_worker(gateway=fake_gateway, SMS_HTTP_TIMEOUT="60", SMS_PROCESSING_LEASE_SECONDS=lease)
    try:
        response = request_otp(api, DEST)
        assert response.status_code == 200, response.json()
        assert fake_gateway.received.wait(timeout=WAIT_SECONDS), f"no gateway call:\n{first.output()}"

        first.kill()
    finally:
        hold.set()  # the provider answers now, to a caller that is gone

    message = SmsMessage.objects.get()
    assert (message.status, message.attempts) == ("processing", 1)
    assert message.claimed_at is not None and message.encrypted_text is not None
    assert fake_gateway.calls == 1

    # The lease runs out (time passing, as in test_worker's _backdate_queued), and a new worker comes up.
    long_ago = timezone.now() - timedelta(seconds=settings.SMS_PROCESSING_LEASE_SECONDS + 1)
    assert SmsMessage.objects.filter(pk=message.pk, status="processing").update(claimed_at=long_ago) == 1
    second = start_worker(gateway=fake_gateway, SMS_PROCESSING_LEASE_SECONDS=lease)
    assert sms_requeue_stale() == 1

    sent = wait_for(lambda: SmsMessage.objects.filter(pk=message.pk, status="sent").exists(), timeout=WAIT_SECONDS)
    assert sent, f"not sent: {SmsMessage.objects.get(pk=message.pk).status}\n{second.output()}"
    second.stop()  # nothing left in flight that could still call the gateway

    message.refresh_from_db()
    assert (message.status, message.attempts, message.provider_message_id) == ("sent", 2, "fake-2")
    assert message.encrypted_text is None
    assert fake_gateway.calls == 2
    assert {r.json["reference"] for r in fake_gateway.requests} == {str(message.public_id)}
    texts = fake_gateway.texts()
    assert len(set(texts)) == 1  # the same code both times: the duplicate is harmless to the user
    code = re.search(r"\b\d{6}\b", texts[0]).group()
    verified = verify(api, response.json()["data"]["sessionId"], code)
    assert verified.json()["data"]["status"] == "APPROVED"


# --- 2. PostgreSQL drops the API's connection ---------------------------------------------------


@pytest.fixture
def pg_admin() -> Iterator[psycopg.Connection]:
    """A second connection to this test's own database, outside Django, to terminate backends from."""
    db = settings.DATABASES["default"]
    with psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"],
        host=db["HOST"],
        port=db["PORT"],
        password=db.get("PASSWORD") or None,
        autocommit=True,
    ) as admin:
        yield admin


def terminate_backends(admin: psycopg.Connection, *, extra_condition: str = "TRUE") -> list[int]:
    """Terminates backends of this test's database only (never other people's), except `admin` itself."""
    rows = admin.execute(
        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND datname = %s AND pid <> pg_backend_pid()"
        f" AND {extra_condition}",
        [settings.DATABASES["default"]["NAME"]],
    ).fetchall()
    return [pid for pid, terminated in rows if terminated]


def test_a_lost_database_connection_is_a_503_and_the_next_request_reconnects(api, pg_admin, caplog):
    """The test client skips the request_started health check (CONN_HEALTH_CHECKS) that would reconnect
    a connection killed between requests; so this is the connection lost after that check, as in a
    database restart during the request.
    """
    connection.ensure_connection()
    django_pid = connection.connection.info.backend_pid
    assert django_pid in terminate_backends(pg_admin)

    failed = api.post(REQUEST_URL, {"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN"}, format="json")

    body = assert_service_unavailable(failed)
    logged = [r for r in caplog.records if r.name == "zeckta.api.errors"]
    assert [r.levelno for r in logged] == [logging.ERROR]
    assert logged[0].request_id == body["requestId"]
    assert "database unavailable" in logged[0].getMessage()

    close_old_connections()  # what request_started does before the next request: drops the dead one
    assert OtpSession.objects.count() == 0 and SmsMessage.objects.count() == 0
    succeeded = request_otp(api, DEST)

    assert succeeded.status_code == 200, succeeded.json()
    assert succeeded.json()["data"]["reused"] is False
    assert OtpSession.objects.count() == 1
    assert_every_session_has_its_sms()


def test_a_connection_lost_inside_the_request_transaction_leaves_no_partial_rows(
    api, workspace, raw_key, pg_admin, caplog
):
    """The request has written its session and waits to debit the prepaid balance (the test holds the
    workspace row) when its backend is terminated: 503, and the session it wrote is rolled back with
    the rest of the transaction.
    """
    workspace.is_prepaid, workspace.balance_units = True, 10
    workspace.save(update_fields=["is_prepaid", "balance_units"])
    ledger_before = LedgerEntry.objects.count()
    table = Workspace._meta.db_table
    holder = psycopg.connect(
        dbname=connection.settings_dict["NAME"],
        user=connection.settings_dict["USER"],
        host=connection.settings_dict["HOST"],
        port=connection.settings_dict["PORT"],
    )
    # NO KEY UPDATE: the session's foreign key check (KEY SHARE) passes, the balance UPDATE waits.
    holder.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR NO KEY UPDATE", [workspace.pk])
    results: list = []

    def call_api() -> None:
        try:
            results.append(request_otp(api, DEST))
        except BaseException as exc:  # surfaced below: the thread's failure must fail the test
            results.append(exc)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=call_api)
    try:
        thread.start()
        waiting_debit = (
            f"wait_event_type = 'Lock' AND state = 'active' AND query LIKE 'UPDATE {table} SET balance_units%%'"
        )
        assert wait_for(
            lambda: (
                pg_admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    f" AND pid <> pg_backend_pid() AND {waiting_debit}"
                ).fetchone()[0]
                == 1
            ),
            timeout=WAIT_SECONDS,
        ), "the request never reached the balance debit"
        assert len(terminate_backends(pg_admin, extra_condition=waiting_debit)) == 1
        thread.join(timeout=WAIT_SECONDS)
    finally:
        holder.rollback()
        holder.close()
        thread.join(timeout=WAIT_SECONDS)

    assert len(results) == 1 and not isinstance(results[0], BaseException), results
    body = assert_service_unavailable(results[0])
    assert OtpSession.objects.count() == 0 and SmsMessage.objects.count() == 0
    assert LedgerEntry.objects.count() == ledger_before
    workspace.refresh_from_db()
    assert workspace.balance_units == 10
    logged = [r for r in caplog.records if r.name == "zeckta.api.errors"]
    assert len(logged) == 1 and logged[0].request_id == body["requestId"]
    assert DEST not in caplog.text and raw_key not in caplog.text and "balance_units" not in caplog.text

    retried = request_otp(api, DEST)  # the main thread's connection was never touched

    assert retried.status_code == 200, retried.json()
    assert_every_session_has_its_sms()
    assert SmsMessage.objects.count() == 1
    workspace.refresh_from_db()
    assert workspace.balance_units == 10 - SmsMessage.objects.get().units


def test_a_lost_database_outside_drf_is_a_503_envelope_too(caplog):
    """Views that are not DRF ViewSets reach ApiErrorMiddleware, which answers the same 503."""
    request = RequestFactory().post(REQUEST_URL)
    middleware = ApiErrorMiddleware(lambda request: None)

    response = middleware.process_exception(request, OperationalError("server closed the connection"))

    assert response.status_code == 503
    body = json.loads(response.content)
    assert (body["success"], body["code"], body["message"]) == (False, "SERVICE_UNAVAILABLE", DB_UNAVAILABLE_MESSAGE)
    assert response["Retry-After"] == str(DatabaseUnavailable.retry_after_seconds)
    assert [r.levelno for r in caplog.records if r.name == "zeckta.api.errors"] == [logging.ERROR]

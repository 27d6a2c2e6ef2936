"""The outbox delivery: sms_deliver and the send_sms task against a fake HTTP provider.

Every test checks the row's status, the database (text wiped, attempts, refunds) and what the
provider received. Retries are driven by calling sms_deliver again, as the task's retry would.
"""

import base64
import json
import logging
import re
import threading
from datetime import timedelta

import pytest
import time_machine
from cryptography.fernet import Fernet
from django.db import connection, transaction
from django.utils import timezone

from otp.crypto import code_matches
from otp.delivery import SMS_DRAIN_TASK, SMS_QUEUE, SmsRetryLater, sms_deliver, sms_requeue_stale
from otp.models import OtpSession, SmsMessage
from otp.services import otp_request
from otp.tasks import otp_sessions_purge_task, sms_deliver_task, sms_drain_task
from otp.tests.helpers import request_otp, verify
from senders.gateways import locmem
from senders.tests.fake_gateway import Answer
from workspaces.models import LedgerEntry
from zeckta.testing import DEST, run_together

OTHER_DEST = "+233202007746"


def queue_otp(workspace, dest: str = DEST) -> SmsMessage:
    """An outbox row exactly as a request leaves it: queued, with its encrypted text."""
    otp_request(workspace=workspace, dest=dest, src="ZECKTA", purpose="LOGIN")
    return SmsMessage.objects.get(to=dest, workspace=workspace)


def code_in(text: str) -> str:
    return re.search(r"\b\d{6}\b", text).group()


def assert_text_is_the_code_of(text: str, message: SmsMessage) -> None:
    session = OtpSession.objects.get(pk=message.session_id)
    assert code_matches(session.public_id, code_in(text), session.code_digest)


def published_tasks(broker) -> list[dict]:
    """The send_sms messages waiting in the Redis queue: their headers and decoded [args, kwargs, embed]."""
    tasks = []
    for raw in broker.lrange(SMS_QUEUE, 0, -1):
        envelope = json.loads(raw)
        tasks.append(
            {"raw": raw, "headers": envelope["headers"], "body": json.loads(base64.b64decode(envelope["body"]))}
        )
    return tasks


@pytest.fixture
def prepaid(workspace):
    workspace.is_prepaid = True
    workspace.balance_units = 10
    workspace.save(update_fields=["is_prepaid", "balance_units"])
    return workspace


# --- outcomes of one call to the provider --------------------------------------------------------


def test_an_accepted_sms_is_sent_once_with_the_contract_json(fake_gateway, workspace, sender):
    message = queue_otp(workspace)
    fake_gateway.answer(Answer(200, {"id": "abc"}))

    assert sms_deliver(message_id=message.pk) == "sent"

    message.refresh_from_db()
    assert message.status == "sent"
    assert message.provider_message_id == "abc"
    assert message.encrypted_text is None
    assert message.attempts == 1
    assert message.last_error == ""
    assert message.finished_at is not None
    assert fake_gateway.calls == 1
    received = fake_gateway.requests[0]
    assert received.headers["authorization"] == "Bearer test-gateway-token"
    assert set(received.json) == {"to", "from", "text", "reference"}
    assert received.json["to"] == DEST
    assert received.json["from"] == "ZECKTA"
    assert received.json["reference"] == str(message.public_id)
    assert_text_is_the_code_of(received.json["text"], message)


def test_a_4xx_fails_at_once_and_refunds_a_prepaid_workspace(fake_gateway, prepaid, sender):
    message = queue_otp(prepaid)
    prepaid.refresh_from_db()
    assert prepaid.balance_units == 10 - message.units
    fake_gateway.answer(Answer(400, {"error": "invalid number"}))

    assert sms_deliver(message_id=message.pk) == "failed"  # no SmsRetryLater: nothing to retry

    message.refresh_from_db()
    assert message.status == "failed"
    assert message.attempts == 1
    assert message.encrypted_text is None
    assert "400" in message.last_error
    assert fake_gateway.calls == 1
    prepaid.refresh_from_db()
    assert prepaid.balance_units == 10
    refund = LedgerEntry.objects.get(workspace=prepaid, reason=LedgerEntry.Reason.REFUND)
    assert (refund.delta_units, refund.balance_after, refund.reference) == (message.units, 10, str(message.public_id))
    # A duplicate task (redelivery, sweeper) changes nothing and refunds nothing twice.
    assert sms_deliver(message_id=message.pk) == "failed"
    assert fake_gateway.calls == 1
    assert LedgerEntry.objects.filter(workspace=prepaid, reason=LedgerEntry.Reason.REFUND).count() == 1


def test_5xx_twice_then_200_delivers_once_with_the_same_reference_and_code(fake_gateway, workspace, sender):
    message = queue_otp(workspace)
    fake_gateway.answer(500, 503, Answer(200, {"id": "third-time"}))

    for attempt, backoff in ((1, 2.0), (2, 4.0)):  # SMS_RETRY_BACKOFF_SECONDS = 2, doubling
        with pytest.raises(SmsRetryLater) as retry:
            sms_deliver(message_id=message.pk)
        assert retry.value.countdown == backoff
        message.refresh_from_db()
        assert (message.status, message.attempts) == ("queued", attempt)
        assert message.encrypted_text is not None  # kept for the retry
        assert "HTTP 5" in message.last_error
        assert message.claimed_at is None
        assert message.next_attempt_at > timezone.now()

    assert sms_deliver(message_id=message.pk) == "sent"

    message.refresh_from_db()
    assert (message.status, message.attempts, message.provider_message_id) == ("sent", 3, "third-time")
    assert message.encrypted_text is None
    assert message.last_error == ""
    assert fake_gateway.calls == 3
    assert {r.json["reference"] for r in fake_gateway.requests} == {str(message.public_id)}
    assert len(set(fake_gateway.texts())) == 1
    assert_text_is_the_code_of(fake_gateway.texts()[0], message)


def test_a_timeout_is_retried(fake_gateway, settings, workspace, sender):
    settings.SMS_HTTP_TIMEOUT = 0.3  # seconds; the fake answers after 1.5
    message = queue_otp(workspace)
    fake_gateway.answer(Answer(200, delay=1.5))

    with pytest.raises(SmsRetryLater):
        sms_deliver(message_id=message.pk)

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("queued", 1)
    assert "timed out" in message.last_error
    assert message.encrypted_text is not None
    assert fake_gateway.calls == 1

    assert sms_deliver(message_id=message.pk) == "sent"
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 2)
    assert fake_gateway.calls == 2
    assert fake_gateway.requests[0].json == fake_gateway.requests[1].json


def test_a_refused_connection_is_retried(settings, closed_port_url, workspace, sender):
    settings.SMS_BACKEND = "http"
    settings.SMS_HTTP_URL = closed_port_url
    message = queue_otp(workspace)

    with pytest.raises(SmsRetryLater):
        sms_deliver(message_id=message.pk)

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("queued", 1)
    assert "unreachable" in message.last_error
    assert message.encrypted_text is not None


def test_it_gives_up_after_the_last_attempt_and_refunds(fake_gateway, settings, prepaid, sender):
    settings.SMS_MAX_SEND_ATTEMPTS = 3
    message = queue_otp(prepaid)
    fake_gateway.answer(500, 500, 500, 200)

    for _ in range(2):
        with pytest.raises(SmsRetryLater):
            sms_deliver(message_id=message.pk)
    assert sms_deliver(message_id=message.pk) == "failed"

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("failed", 3)
    assert message.encrypted_text is None
    assert message.last_error.startswith("gave up after 3 attempts")
    assert fake_gateway.calls == 3
    prepaid.refresh_from_db()
    assert prepaid.balance_units == 10
    assert LedgerEntry.objects.filter(workspace=prepaid, reason=LedgerEntry.Reason.REFUND).count() == 1
    # No fourth call, ever.
    assert sms_deliver(message_id=message.pk) == "failed"
    assert fake_gateway.calls == 3


def test_the_task_retries_transient_errors_until_sent(fake_gateway, workspace, sender):
    message = queue_otp(workspace)
    fake_gateway.answer(502, 502, 200)

    # Eagerly applied, Celery runs each retry at once (no countdown): the retry wiring, not the timing.
    sms_deliver_task.apply(args=[message.pk])

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 3)
    assert fake_gateway.calls == 3
    assert len(set(fake_gateway.texts())) == 1


def test_the_task_stops_at_the_attempt_limit(fake_gateway, settings, workspace, sender):
    settings.SMS_MAX_SEND_ATTEMPTS = 4
    message = queue_otp(workspace)
    fake_gateway.answer(*[500] * 10)

    sms_deliver_task.apply(args=[message.pk])

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("failed", 4)
    assert message.encrypted_text is None
    assert fake_gateway.calls == 4


# --- a dead OTP sends nothing --------------------------------------------------------------------


def test_a_task_for_an_expired_otp_sends_nothing(fake_gateway, prepaid, sender):
    message = queue_otp(prepaid)
    expires_at = OtpSession.objects.get(pk=message.session_id).expires_at

    with time_machine.travel(expires_at + timedelta(seconds=1), tick=False):
        sms_deliver_task.apply(args=[message.pk])

    message.refresh_from_db()
    assert message.status == "expired"
    assert message.encrypted_text is None
    assert message.attempts == 0
    assert fake_gateway.calls == 0
    prepaid.refresh_from_db()
    assert prepaid.balance_units == 10  # an SMS never sent is not paid for


def test_a_retry_after_the_otp_expired_sends_nothing(fake_gateway, workspace, sender):
    message = queue_otp(workspace)
    expires_at = OtpSession.objects.get(pk=message.session_id).expires_at
    fake_gateway.answer(500)
    with pytest.raises(SmsRetryLater):
        sms_deliver(message_id=message.pk)

    with time_machine.travel(expires_at + timedelta(seconds=1), tick=False):
        assert sms_deliver(message_id=message.pk) == "expired"

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("expired", 1)
    assert message.encrypted_text is None
    assert fake_gateway.calls == 1


def test_a_session_no_longer_pending_sends_nothing(fake_gateway, workspace, sender):
    message = queue_otp(workspace)
    OtpSession.objects.filter(pk=message.session_id).update(status=OtpSession.Status.EXPIRED)  # replaced

    assert sms_deliver(message_id=message.pk) == "expired"

    message.refresh_from_db()
    assert message.status == "expired"
    assert message.encrypted_text is None
    assert fake_gateway.calls == 0


def test_an_unknown_message_id_sends_nothing(fake_gateway, db):
    assert sms_deliver(message_id=987654321) == "missing"
    assert fake_gateway.calls == 0


def test_a_text_the_current_key_cannot_decrypt_fails_at_once_and_refunds(fake_gateway, settings, prepaid, sender):
    settings.SMS_ENCRYPTION_KEY = Fernet.generate_key().decode()
    message = queue_otp(prepaid)
    # Rotated after the request with the old key left out of SMS_ENCRYPTION_KEY_FALLBACKS.
    settings.SMS_ENCRYPTION_KEY = Fernet.generate_key().decode()

    assert sms_deliver(message_id=message.pk) == "failed"

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("failed", 1)
    assert message.encrypted_text is None
    assert "decrypt" in message.last_error
    assert fake_gateway.calls == 0
    prepaid.refresh_from_db()
    assert prepaid.balance_units == 10


def test_purging_removes_old_sessions_with_their_outbox_rows(workspace, sender):
    old = queue_otp(workspace, DEST)
    recent = queue_otp(workspace, OTHER_DEST)
    long_ago = timezone.now() - timedelta(days=31)
    OtpSession.objects.filter(pk=old.session_id).update(created_at=long_ago, expires_at=long_ago)
    SmsMessage.objects.filter(pk=old.pk).update(created_at=long_ago)  # an SMS is as old as its session

    # SQLite: the session and its cascaded SMS row; PostgreSQL: at least the day's partition of sessions.
    assert otp_sessions_purge_task.apply().get() >= 1

    assert list(OtpSession.objects.values_list("pk", flat=True)) == [recent.session_id]
    assert list(SmsMessage.objects.values_list("pk", flat=True)) == [recent.pk]


# --- exactly once --------------------------------------------------------------------------------


def test_delivering_twice_sends_once(fake_gateway, workspace, sender):
    message = queue_otp(workspace)

    assert sms_deliver(message_id=message.pk) == "sent"
    assert sms_deliver(message_id=message.pk) == "sent"

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 1)
    assert fake_gateway.calls == 1


@pytest.mark.django_db(transaction=True)
def test_workers_delivering_the_same_message_at_once_send_it_once(fake_gateway, broker_queue, workspace, sender):
    message = queue_otp(workspace)
    fake_gateway.answer(Answer(200, {"id": "only"}, delay=0.2))  # hold the claim while the others try

    results = run_together(6, lambda i: sms_deliver(message_id=message.pk))

    assert results.count("sent") >= 1
    assert set(results) <= {"sent", "processing"}
    message.refresh_from_db()
    assert (message.status, message.attempts, message.provider_message_id) == ("sent", 1, "only")
    assert fake_gateway.calls == 1


@pytest.mark.django_db(transaction=True)
def test_a_claim_waiting_on_another_workers_lock_rechecks_the_status(fake_gateway, broker_queue, workspace, sender):
    """Worker A's claim is not committed yet when B's UPDATE takes its snapshot; B waits on the row lock.

    When A commits `sent`, B must re-check the row's own status and claim nothing (a condition kept in
    a joined subquery would be re-checked against B's old snapshot and send a second SMS).
    """
    message = queue_otp(workspace)
    fake_gateway.answer(Answer(200, {"id": "first"}, delay=1.0))
    outcome: dict[str, object] = {}

    def worker_a() -> None:
        try:
            with transaction.atomic():  # keeps A's claim uncommitted until its send is recorded
                outcome["a"] = sms_deliver(message_id=message.pk)
        finally:
            connection.close()

    thread = threading.Thread(target=worker_a)
    thread.start()
    try:
        assert fake_gateway.received.wait(timeout=10)  # A holds the claim and is inside the gateway call
        outcome["b"] = sms_deliver(message_id=message.pk)
    finally:
        thread.join(timeout=30)

    assert outcome == {"a": "sent", "b": "sent"}
    message.refresh_from_db()
    assert (message.status, message.attempts, message.provider_message_id) == ("sent", 1, "first")
    assert fake_gateway.calls == 1


def _leave_processing(message: SmsMessage, *, claimed_seconds_ago: float) -> None:
    """What a worker killed mid-send leaves behind: the claim, one attempt, no outcome."""
    claimed_at = timezone.now() - timedelta(seconds=claimed_seconds_ago)
    SmsMessage.objects.filter(pk=message.pk).update(status="processing", claimed_at=claimed_at, attempts=1)


def test_a_dead_workers_claim_is_taken_over_after_the_lease(fake_gateway, broker_queue, settings, workspace, sender):
    message = queue_otp(workspace)
    _leave_processing(message, claimed_seconds_ago=settings.SMS_PROCESSING_LEASE_SECONDS + 5)

    assert sms_requeue_stale() == 1

    assert [t["headers"]["task"] for t in published_tasks(broker_queue)] == [SMS_DRAIN_TASK]
    assert sms_drain_task.apply().get() == 1  # what the worker does with that task
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 2)
    assert message.encrypted_text is None
    assert fake_gateway.calls == 1
    assert fake_gateway.requests[0].json["reference"] == str(message.public_id)
    assert_text_is_the_code_of(fake_gateway.texts()[0], message)


def test_a_claim_within_its_lease_is_left_alone(fake_gateway, broker_queue, settings, workspace, sender):
    message = queue_otp(workspace)
    _leave_processing(message, claimed_seconds_ago=settings.SMS_PROCESSING_LEASE_SECONDS - 30)

    assert sms_requeue_stale() == 0
    assert published_tasks(broker_queue) == []
    assert sms_deliver(message_id=message.pk) == "processing"  # a duplicate task while the owner works

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("processing", 1)
    assert message.encrypted_text is not None
    assert fake_gateway.calls == 0


# --- the sweeper ---------------------------------------------------------------------------------


def test_the_sweeper_requeues_only_stale_rows_then_they_are_sent(
    fake_gateway, broker_queue, settings, workspace, sender
):
    stale = queue_otp(workspace, DEST)
    fresh = queue_otp(workspace, OTHER_DEST)
    # The broker was down when `stale` was requested: nobody picked it up since.
    SmsMessage.objects.filter(pk=stale.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=settings.SMS_STALE_AFTER_SECONDS + 1)
    )

    assert sms_requeue_stale() == 1

    tasks = published_tasks(broker_queue)
    assert [(t["headers"]["task"], t["body"][0]) for t in tasks] == [("otp.tasks.drain_sms", [])]
    stale.refresh_from_db()
    assert stale.status == "queued"
    assert stale.next_attempt_at > timezone.now() - timedelta(seconds=5)  # not stale again until a period passes
    assert sms_requeue_stale() == 0  # one outage does not flood the queue

    assert sms_drain_task.apply().get() == 2  # the drain sends every due row, the fresh one too

    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert (stale.status, stale.attempts) == ("sent", 1)
    assert (fresh.status, fresh.attempts) == ("sent", 1)
    assert fake_gateway.calls == 2
    assert sorted(r.json["reference"] for r in fake_gateway.requests) == sorted(
        [str(stale.public_id), str(fresh.public_id)]
    )


def test_the_sweeper_requeues_a_stale_row_of_an_expired_otp_so_it_is_settled(
    fake_gateway, broker_queue, workspace, sender
):
    message = queue_otp(workspace)
    expires_at = OtpSession.objects.get(pk=message.session_id).expires_at

    with time_machine.travel(expires_at + timedelta(seconds=60), tick=False):
        assert sms_requeue_stale() == 1
        [task] = published_tasks(broker_queue)
        assert task["headers"]["task"] == SMS_DRAIN_TASK
        assert sms_drain_task.apply().get() == 0

    message.refresh_from_db()
    assert message.status == "expired"
    assert message.encrypted_text is None
    assert fake_gateway.calls == 0


# --- no code leaks ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_published_task_carries_only_the_message_id(broker_queue, api):
    response = request_otp(api, DEST)  # committed: on_commit publishes to the real broker
    assert response.status_code == 200, response.json()
    assert SmsMessage.objects.get().status == "queued"

    [task] = published_tasks(broker_queue)  # nobody consumes this db: the message waits in the list
    assert task["headers"]["task"] == "otp.tasks.drain_sms"  # a nudge to the drainer: no argument at all
    assert task["body"][0] == []
    assert task["body"][1] == {}
    assert task["headers"]["argsrepr"] == "()"

    assert sms_drain_task.apply().get() == 1
    code = code_in(locmem.outbox[0].text)
    assert code.encode() not in task["raw"]
    assert code not in json.dumps(task["body"])
    for key in broker_queue.scan_iter("*"):  # nor anywhere else in this Redis db (cache, bindings)
        kind = broker_queue.type(key)
        if kind == b"string":
            values = [broker_queue.get(key)]
        elif kind == b"list":
            values = broker_queue.lrange(key, 0, -1)
        elif kind == b"hash":
            values = list(broker_queue.hgetall(key).values())
        elif kind == b"set":
            values = list(broker_queue.smembers(key))
        else:
            values = [member for member, _ in broker_queue.zrange(key, 0, -1, withscores=True)]
        assert not any(code.encode() in (v or b"") for v in values), key


def test_no_log_line_of_a_whole_delivery_holds_the_code(fake_gateway, settings, api, caplog):
    caplog.set_level(logging.DEBUG)
    settings.SMS_HTTP_TIMEOUT = 0.3  # seconds
    fake_gateway.answer(500, Answer(200, delay=1.5), 400)  # every logged path: retry, timeout, refusal
    response = request_otp(api, DEST)
    assert response.status_code == 200
    message = SmsMessage.objects.get()

    for _ in range(2):
        with pytest.raises(SmsRetryLater):
            sms_deliver(message_id=message.pk)
    assert sms_deliver(message_id=message.pk) == "failed"

    assert fake_gateway.calls == 3
    text = fake_gateway.texts()[0]
    code = code_in(text)
    session_id = response.json()["data"]["sessionId"]
    assert verify(api, session_id, code).status_code == 200  # it was the real code
    assert len(caplog.records) >= 3, "the delivery logs its steps"
    assert code not in caplog.text
    assert text not in caplog.text
    for record in caplog.records:
        assert code not in record.getMessage()
        assert code not in repr(record.args)

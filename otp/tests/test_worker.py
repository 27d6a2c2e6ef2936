"""End to end through real processes: the API publishes to Redis, a `celery -A zeckta worker` subprocess
sends through the fake HTTP provider, and the code it carried verifies.

The worker runs on the test database (transactional tests, so rows are committed and on_commit fires)
and on this test run's own Redis db, or on a private redis-server that a test stops and restarts.
"""

import json
import re
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from otp.delivery import SMS_DRAIN_TASK, SMS_QUEUE, sms_requeue_stale
from otp.models import SmsMessage
from otp.tests.helpers import request_otp, verify
from otp.tests.processes import broker_pointed_at
from senders.tests.fake_gateway import Answer
from workspaces.models import LedgerEntry
from zeckta.testing import DEST, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

OTHER_DEST = "+233202007746"
DELIVERY_WAIT_SECONDS = 20  # an upper bound for polling, not a timing assertion


def status_of(message_id: int) -> str:
    return SmsMessage.objects.values_list("status", flat=True).get(pk=message_id)


def wait_until_settled(message_id: int, gateway, *, calls: int) -> None:
    settled = wait_for(
        lambda: status_of(message_id) in SmsMessage.TERMINAL and gateway.calls >= calls,
        timeout=DELIVERY_WAIT_SECONDS,
    )
    assert settled, f"message {message_id} is {status_of(message_id)!r} after {gateway.calls} gateway calls"


def code_in(text: str) -> str:
    return re.search(r"\b\d{6}\b", text).group()


def test_a_requested_otp_is_sent_once_by_the_worker_and_verifies(fake_gateway, broker_queue, start_worker, api):
    worker = start_worker(gateway=fake_gateway)

    response = request_otp(api, DEST)

    assert response.status_code == 200, response.json()
    session_id = response.json()["data"]["sessionId"]
    message = SmsMessage.objects.get(session__public_id=session_id)
    wait_until_settled(message.pk, fake_gateway, calls=1)
    worker.stop()  # nothing left in flight that could still call the gateway

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 1)
    assert message.provider_message_id == "fake-1"
    assert message.encrypted_text is None
    assert fake_gateway.calls == 1
    sent = fake_gateway.requests[0]
    assert sent.json["reference"] == str(message.public_id)
    assert sent.json["to"] == DEST and sent.json["from"] == "ZECKTA"
    assert sent.headers["authorization"] == "Bearer test-gateway-token"

    verified = verify(api, session_id, code_in(sent.json["text"]))
    assert verified.status_code == 200, verified.json()
    assert verified.json()["data"]["status"] == "APPROVED"
    assert code_in(sent.json["text"]) not in worker.output()  # nor in the worker's own log


def test_the_worker_retries_5xx_with_backoff_and_the_same_reference(fake_gateway, broker_queue, start_worker, api):
    fake_gateway.answer(500, 503, Answer(200, {"id": "after-retries"}))
    worker = start_worker(gateway=fake_gateway)  # retry backoff 0.2 s doubling, at most 0.5 s

    response = request_otp(api, DEST)

    assert response.status_code == 200
    message = SmsMessage.objects.get()
    wait_until_settled(message.pk, fake_gateway, calls=3)
    worker.stop()

    message.refresh_from_db()
    assert (message.status, message.attempts, message.provider_message_id) == ("sent", 3, "after-retries")
    assert message.encrypted_text is None
    assert fake_gateway.calls == 3
    assert {r.json["reference"] for r in fake_gateway.requests} == {str(message.public_id)}
    assert len(set(fake_gateway.texts())) == 1  # the same code on every try
    assert worker.output().count("; retrying") == 2  # each retry waits in the row, and a drain takes it then
    code = code_in(fake_gateway.texts()[0])
    assert verify(api, response.json()["data"]["sessionId"], code).json()["data"]["status"] == "APPROVED"


def test_the_worker_fails_a_4xx_at_once_and_refunds(fake_gateway, broker_queue, start_worker, api, workspace):
    workspace.is_prepaid, workspace.balance_units = True, 5
    workspace.save(update_fields=["is_prepaid", "balance_units"])
    fake_gateway.answer(Answer(422, {"error": "blocked destination"}))
    worker = start_worker(gateway=fake_gateway)

    response = request_otp(api, DEST)

    assert response.status_code == 200
    message = SmsMessage.objects.get()
    wait_until_settled(message.pk, fake_gateway, calls=1)
    worker.stop()

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("failed", 1)
    assert message.encrypted_text is None
    assert "422" in message.last_error
    assert fake_gateway.calls == 1
    workspace.refresh_from_db()
    assert workspace.balance_units == 5
    assert LedgerEntry.objects.filter(workspace=workspace, reason=LedgerEntry.Reason.REFUND).count() == 1


def _backdate_queued() -> None:
    """Time passing for the sweeper: every queued row is now older than SMS_STALE_AFTER_SECONDS."""
    long_ago = timezone.now() - timedelta(seconds=settings.SMS_STALE_AFTER_SECONDS + 1)
    SmsMessage.objects.filter(status="queued").update(next_attempt_at=long_ago)


def test_a_request_while_the_broker_is_down_answers_200_and_is_sent_after_recovery(
    fake_gateway, private_redis, start_worker, api
):
    with broker_pointed_at(private_redis.url):
        before = request_otp(api, OTHER_DEST)  # published while the broker is up ...
        assert before.status_code == 200
        private_redis.stop()  # ... and lost with it: this redis keeps nothing on disk

        during = request_otp(api, DEST)  # must return (pytest-timeout bounds it), not hang on the publish

        assert during.status_code == 200, during.json()
        assert during.json()["data"]["reused"] is False
        assert SmsMessage.objects.filter(status="queued", attempts=0).count() == 2
        assert fake_gateway.calls == 0

        private_redis.start()
        _backdate_queued()
        assert sms_requeue_stale() == 2
        start_worker(gateway=fake_gateway, broker_url=private_redis.url)
        messages = list(SmsMessage.objects.all())
        for message in messages:
            wait_until_settled(message.pk, fake_gateway, calls=2)

    assert {m.status for m in SmsMessage.objects.all()} == {"sent"}
    assert fake_gateway.calls == 2
    assert sorted(r.json["reference"] for r in fake_gateway.requests) == sorted(str(m.public_id) for m in messages)
    assert sorted(r.json["to"] for r in fake_gateway.requests) == sorted([DEST, OTHER_DEST])
    text = next(r.json["text"] for r in fake_gateway.requests if r.json["to"] == DEST)
    approved = verify(api, during.json()["data"]["sessionId"], code_in(text))
    assert approved.json()["data"]["status"] == "APPROVED"


def test_a_request_while_the_broker_hangs_answers_200_and_the_sweeper_publishes_later(private_redis, api):
    with broker_pointed_at(private_redis.url):
        request_otp(api, OTHER_DEST)  # a live pooled connection, as in a running web process
        broker = redis.Redis.from_url(private_redis.url)
        broker.delete(SMS_QUEUE)
        private_redis.freeze()  # accepts connections, never answers: publishing waits one socket timeout

        response = request_otp(api, DEST)  # pytest-timeout bounds it

        assert response.status_code == 200, response.json()
        message = SmsMessage.objects.get(to=DEST)
        assert (message.status, message.attempts) == ("queued", 0)

        private_redis.thaw()
        _backdate_queued()
        assert sms_requeue_stale() == 2

    # A drain is in the queue: it takes every due row, both of these. (The timed-out publish may still land
    # once redis reads its socket: a second drain, which finds nothing left to claim.)
    tasks = [json.loads(raw)["headers"]["task"] for raw in broker.lrange(SMS_QUEUE, 0, -1)]
    assert SMS_DRAIN_TASK in tasks and set(tasks) == {SMS_DRAIN_TASK}
    assert SmsMessage.objects.filter(status="queued").count() == 2


def test_a_route_rate_cap_holds_across_two_worker_processes(fake_gateway, broker_queue, start_worker, api, workspace):
    """Two workers share one route capped at 1 SMS/s: six SMS need at least five one-second windows."""
    from otp.models import SmsAttempt
    from senders.routes import route_create

    workspace.destination_limit = 100
    workspace.save()
    route_create(name="capped", backend="http", values={"url": fake_gateway.url}, rate_per_second=1)
    workers = [start_worker(gateway=fake_gateway), start_worker(gateway=fake_gateway)]
    numbers = [f"+2332020077{index:02d}" for index in range(6)]

    for number in numbers:
        assert request_otp(api, number).status_code == 200

    assert wait_for(lambda: SmsMessage.objects.filter(status="sent").count() == 6, timeout=30), (
        list(SmsMessage.objects.values_list("status", flat=True)),
        [w.output()[-3000:] for w in workers],
    )
    sent = sorted(SmsAttempt.objects.filter(status="accepted").values_list("started_at", flat=True))
    assert len(sent) == 6 and fake_gateway.calls == 6  # each SMS once, none lost to the waiting
    # Six distinct one-second windows span at least five seconds of the clock, less the few milliseconds
    # between an attempt's start and its rate check.
    assert sent[-1] - sent[0] >= timedelta(seconds=3.9)

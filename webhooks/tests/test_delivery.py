"""Delivering events to a live receiver on loopback: signatures checked with the standardwebhooks library,
retries driven by moving time (next_attempt_at, retry_until, time_machine), never by sleeping."""

import base64
import hashlib
import hmac
import json
import threading
from datetime import timedelta

import pytest
import redis
import time_machine
from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from webhooks.delivery import (
    WEBHOOK_DRAIN_KEY,
    WEBHOOKS_QUEUE,
    retry_delay,
    webhook_deliver,
    webhook_deliveries_purge,
    webhook_deliveries_requeue,
    webhook_drain,
)
from webhooks.models import Event, WebhookDelivery, WebhookEndpoint
from webhooks.services import webhook_endpoint_rotate_secret, webhook_event_record
from webhooks.tasks import webhook_deliver_task
from webhooks.tests.factories import SESSION_VIEW, endpoint_for, record_event
from webhooks.tests.receiver import Receiver, Reply
from zeckta.testing import free_port, run_together, wait_for

pytestmark = pytest.mark.django_db


def make_due(delivery: WebhookDelivery) -> None:
    """Moves the delivery's next attempt into the past, as the time passing would."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=5))


def published_ids(broker) -> list[int | None]:
    """The delivery id each drain task waiting in the broker's queue names (None: a nudge's, naming none)."""
    bodies = [json.loads(base64.b64decode(json.loads(raw)["body"])) for raw in broker.lrange(WEBHOOKS_QUEUE, 0, -1)]
    return [body[0][0] if body[0] else None for body in bodies]


def expected_signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The Standard Webhooks signature worked out by hand, independently of the code under test."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


# --- one attempt ---------------------------------------------------------------------------------


def test_an_event_is_delivered_once_with_a_signature_the_library_verifies(receiver, workspace):
    created = endpoint_for(workspace, receiver.url, [Event.OTP_APPROVED])
    at = timezone.now() - timedelta(seconds=3)
    [delivery] = record_event(workspace, Event.OTP_APPROVED, at=at)

    assert webhook_deliver(delivery_id=delivery.pk) == "delivered"
    assert webhook_deliver(delivery_id=delivery.pk) == "delivered"  # a second task finds it done

    [request] = receiver.requests
    assert request.path == "/hooks/zeckta"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == delivery.webhook_id == f"msg_{delivery.public_id.hex}"
    assert request.body == delivery.body.encode()
    payload = Webhook(created.secret).verify(request.body, request.headers)
    assert payload == {"type": "otp.approved", "timestamp": at.isoformat().replace("+00:00", "Z"), "data": SESSION_VIEW}
    assert request.headers["webhook-signature"] == expected_signature(
        created.secret, request.headers["webhook-id"], request.headers["webhook-timestamp"], request.body
    )
    assert abs(int(request.headers["webhook-timestamp"]) - timezone.now().timestamp()) < 60
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "delivered",
        1,
        200,
        "",
    )
    assert delivery.finished_at is not None


def test_a_tampered_body_or_another_secret_does_not_verify(receiver, workspace):
    created = endpoint_for(workspace, receiver.url)
    other = endpoint_for(workspace, "https://example.com/other")
    [delivery, _] = record_event(workspace)
    webhook_deliver(delivery_id=delivery.pk)
    [request] = receiver.requests

    with pytest.raises(WebhookVerificationError):
        Webhook(created.secret).verify(request.body.replace(b"APPROVED", b"EXPIRED"), request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(other.secret).verify(request.body, request.headers)


def test_only_the_endpoints_subscribed_to_the_event_get_it(receiver, workspace):
    approvals = endpoint_for(workspace, receiver.url, [Event.OTP_APPROVED])
    endpoint_for(workspace, receiver.url, [Event.OTP_SENT])

    deliveries = record_event(workspace, Event.OTP_APPROVED)

    assert [d.endpoint_id for d in deliveries] == [approvals.endpoint.pk]
    assert record_event(workspace, Event.OTP_CANCELED) == []


def test_a_500_then_a_200_sends_the_same_webhook_id_and_bytes_twice(receiver, workspace, broker):
    endpoint_for(workspace, receiver.url)
    receiver.reply(Reply(500, b'{"error": "database down"}'))
    [delivery] = record_event(workspace)

    before = timezone.now()
    assert webhook_deliver(delivery_id=delivery.pk) == "pending"

    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_status_code) == (1, 500)
    assert delivery.last_error == 'HTTP 500: {"error": "database down"}'
    # About 5 s later (jitter 20 %), published now with that countdown: a short wait is not the sweeper's.
    assert before + timedelta(seconds=4) <= delivery.next_attempt_at <= timezone.now() + timedelta(seconds=6)
    assert published_ids(broker) == [delivery.pk]
    assert webhook_deliver(delivery_id=delivery.pk) == "pending"  # not due yet: no call
    assert receiver.calls == 1

    make_due(delivery)
    assert webhook_deliver(delivery_id=delivery.pk) == "delivered"

    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.webhook_id
    assert first.body == second.body == delivery.body.encode()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "delivered",
        2,
        200,
        "",
    )


def test_a_receiver_that_was_down_gets_the_event_once_it_is_back(settings, workspace, broker):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    port = free_port()  # nobody listens: connections are refused
    endpoint_for(workspace, f"http://127.0.0.1:{port}/hooks")
    [delivery] = record_event(workspace)

    for attempt in (1, 2):
        make_due(delivery)
        assert webhook_deliver(delivery_id=delivery.pk) == "pending"
        delivery.refresh_from_db()
        assert delivery.attempts == attempt and delivery.last_status_code is None
        assert delivery.last_error.startswith("could not connect:") and "refused" in delivery.last_error

    receiver = Receiver().start(port=port)
    try:
        make_due(delivery)
        broker.delete(WEBHOOKS_QUEUE)
        assert webhook_deliveries_requeue() == 1  # the beat's sweeper, as every 30 s
        assert published_ids(broker) == [delivery.pk]
        # What the worker runs for that message: every due delivery, this one among them.
        assert webhook_deliver_task(delivery.pk) == 1
    finally:
        receiver.stop()
    assert receiver.calls == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    assert receiver.requests[0].headers["webhook-id"] == delivery.webhook_id


def test_retries_follow_the_schedule_and_stop_after_24_hours(settings, workspace):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    endpoint = endpoint_for(workspace, f"http://127.0.0.1:{free_port()}/hooks").endpoint
    start = timezone.now()
    waits = []
    with time_machine.travel(start, tick=False) as traveller:
        [delivery] = record_event(workspace)
        while webhook_deliver(delivery_id=delivery.pk) == "pending":
            delivery.refresh_from_db()
            waits.append((delivery.next_attempt_at - timezone.now()).total_seconds())
            traveller.move_to(delivery.next_attempt_at)

    delivery.refresh_from_db()
    *retries, last = waits
    planned = [5, 30, 120, 600, 3600] + [10800] * (len(retries) - 5)
    assert all(p * 0.8 <= wait <= p * 1.2 for wait, p in zip(retries, planned, strict=True))
    assert 0 < last <= 10800 * 1.2  # the last retry falls on the window's end, 24 h after the event
    assert delivery.status == "given_up" and delivery.attempts == len(waits) + 1
    assert delivery.finished_at == start + timedelta(hours=24)
    endpoint.refresh_from_db()
    assert endpoint.failing and endpoint.failing_since == delivery.finished_at


def test_the_retry_delays_grow_then_stay_at_three_hours():
    for attempts, planned in [(1, 5), (2, 30), (3, 120), (4, 600), (5, 3600), (6, 10800), (40, 10800)]:
        delays = [retry_delay(attempts) for _ in range(50)]
        assert all(planned * 0.8 <= delay <= planned * 1.2 for delay in delays)
        assert len(set(delays)) > 1  # jittered


def test_a_give_up_marks_the_endpoint_failing_and_the_next_success_clears_it(receiver, workspace):
    endpoint = endpoint_for(workspace, receiver.url).endpoint
    receiver.reply(503)
    [first] = record_event(workspace)
    # Its 24 hours have passed (the schedule itself is walked in the test above).
    WebhookDelivery.objects.filter(pk=first.pk).update(retry_until=timezone.now() - timedelta(seconds=1))

    assert webhook_deliver(delivery_id=first.pk) == "given_up"
    endpoint.refresh_from_db()
    assert endpoint.failing

    [second] = record_event(workspace)
    assert webhook_deliver(delivery_id=second.pk) == "delivered"
    endpoint.refresh_from_db()
    assert not endpoint.failing
    first.refresh_from_db()
    assert (first.status, first.last_status_code) == ("given_up", 503)


# --- secrets -------------------------------------------------------------------------------------


def test_after_a_rotation_both_secrets_sign_for_24_hours_then_only_the_new_one(receiver, workspace):
    old = endpoint_for(workspace, receiver.url)
    new = webhook_endpoint_rotate_secret(workspace=workspace, webhook_id=old.endpoint.public_id, test=False)
    assert new.secret != old.secret and new.secret.startswith("whsec_")

    [during] = record_event(workspace)
    webhook_deliver(delivery_id=during.pk)
    request = receiver.requests[-1]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old.secret, new.secret):
        assert Webhook(secret).verify(request.body, request.headers)["type"] == "otp.approved"

    # 24 hours later (the overlap's end moved to now).
    WebhookEndpoint.objects.filter(pk=old.endpoint.pk).update(previous_secret_expires_at=timezone.now())
    [after] = record_event(workspace)
    webhook_deliver(delivery_id=after.pk)
    request = receiver.requests[-1]
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    assert Webhook(new.secret).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old.secret).verify(request.body, request.headers)

    webhook_deliveries_purge()  # also wipes the expired secret
    assert WebhookEndpoint.objects.get(pk=old.endpoint.pk).encrypted_previous_secret is None


def test_the_secret_is_stored_encrypted_with_a_display_prefix_only(workspace):
    created = endpoint_for(workspace, "https://example.com/hooks")
    stored = WebhookEndpoint.objects.get(pk=created.endpoint.pk)
    raw_key = base64.b64decode(created.secret.removeprefix("whsec_"))
    assert len(raw_key) == 32
    assert created.secret.encode() not in bytes(stored.encrypted_secret)
    assert raw_key not in bytes(stored.encrypted_secret)
    assert stored.secret_prefix == created.secret[:10]


# --- the outbox ----------------------------------------------------------------------------------


def test_an_event_rolls_back_with_the_transaction_that_recorded_it(workspace, django_capture_on_commit_callbacks):
    endpoint_for(workspace, "https://example.com/hooks")
    with django_capture_on_commit_callbacks() as published, pytest.raises(RuntimeError, match="boom"):
        with transaction.atomic():
            webhook_event_record(
                workspace_id=workspace.pk, event_type=Event.OTP_APPROVED, at=timezone.now(), data=SESSION_VIEW
            )
            assert WebhookDelivery.objects.count() == 1
            raise RuntimeError("boom")

    assert not WebhookDelivery.objects.exists()
    assert published == []  # nothing reaches the broker for an event that never happened


def test_recording_is_published_on_commit_only(workspace, broker, django_capture_on_commit_callbacks):
    endpoint_for(workspace, "https://example.com/hooks")
    with django_capture_on_commit_callbacks(execute=True) as published:
        [delivery] = record_event(workspace)
        assert published_ids(broker) == []
    assert len(published) == 1 and published_ids(broker) == [None]  # a drain task, which attempts every due one


@pytest.mark.django_db(transaction=True)  # each event commits, as in service
def test_a_burst_of_events_publishes_one_drain_and_a_drain_at_work_none(settings, workspace, broker):
    settings.SMS_DRAIN_NUDGE_MS = 60_000  # one window for the whole test: the coalescing, not the clock
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    receiver = Receiver().start()
    settings.WEBHOOK_TIMEOUT_SECONDS = 30
    receiver.reply(Reply(delay=5))  # the first call takes its time: the drain is at work meanwhile
    outcome = {}

    def drain() -> None:
        try:
            outcome["delivered"] = webhook_drain()
        finally:
            connection.close()

    try:
        endpoint_for(workspace, receiver.url)
        for _ in range(5):
            record_event(workspace)
        assert published_ids(broker) == [None]  # five events, one task
        broker.delete(WEBHOOKS_QUEUE)
        redis.Redis.from_url(settings.REDIS_URL).delete(WEBHOOK_DRAIN_KEY)  # as if its window had passed
        drainer = threading.Thread(target=drain)
        drainer.start()
        try:
            assert wait_for(lambda: receiver.calls >= 1, timeout=30)
            for _ in range(3):
                record_event(workspace)
            published_meanwhile = published_ids(broker)
        finally:
            drainer.join(timeout=30)
        assert published_meanwhile == []  # the drain held the key: its next claim follows their commits
        assert outcome["delivered"] == 8
        record_event(workspace)  # after the drain let go of the key
        assert published_ids(broker) == [None]
    finally:
        receiver.stop()


@pytest.mark.django_db(transaction=True)  # outside the test's own transaction
def test_recording_needs_the_callers_transaction(workspace):
    with pytest.raises(RuntimeError, match="inside the transaction"):
        webhook_event_record(workspace_id=workspace.pk, event_type=Event.OTP_APPROVED, at=timezone.now(), data={})
    with pytest.raises(ValueError, match="unknown webhook event"), transaction.atomic():
        webhook_event_record(workspace_id=workspace.pk, event_type="otp.bogus", at=timezone.now(), data={})


def test_without_a_subscriber_recording_costs_no_query_once_the_cache_is_warm(workspace, django_assert_num_queries):
    endpoint_for(workspace, "https://example.com/hooks", [Event.OTP_SENT])
    with transaction.atomic():
        webhook_event_record(workspace_id=workspace.pk, event_type=Event.OTP_APPROVED, at=timezone.now(), data={})
        with django_assert_num_queries(0):
            assert (
                webhook_event_record(
                    workspace_id=workspace.pk, event_type=Event.OTP_APPROVED, at=timezone.now(), data={}
                )
                == 0
            )


def test_a_new_endpoint_receives_events_at_once_in_this_process(workspace):
    assert record_event(workspace) == []  # fills the cache: no endpoint
    endpoint_for(workspace, "https://example.com/hooks")
    assert len(record_event(workspace)) == 1


def test_a_delivery_whose_endpoint_went_away_is_dropped(workspace):
    endpoint = endpoint_for(workspace, "https://example.com/hooks").endpoint
    [delivery] = record_event(workspace)
    # The endpoint deleted while the event's transaction was still open: its deliveries were not seen.
    WebhookEndpoint.objects.filter(pk=endpoint.pk)._raw_delete(WebhookEndpoint.objects.db)

    assert webhook_deliver(delivery_id=delivery.pk) == "dropped"
    assert not WebhookDelivery.objects.exists()


def test_the_sweeper_publishes_due_and_abandoned_deliveries_only(workspace, broker):
    endpoint_for(workspace, "https://example.com/hooks")
    due, later, sending, abandoned, done = [record_event(workspace)[0] for _ in range(5)]
    now = timezone.now()
    make_due(due)
    WebhookDelivery.objects.filter(pk=later.pk).update(next_attempt_at=now + timedelta(hours=1))
    WebhookDelivery.objects.filter(pk=sending.pk).update(status="sending", claimed_at=now)
    WebhookDelivery.objects.filter(pk=abandoned.pk).update(status="sending", claimed_at=now - timedelta(minutes=5))
    WebhookDelivery.objects.filter(pk=done.pk).update(status="delivered", finished_at=now)

    assert webhook_deliveries_requeue() == 2
    assert published_ids(broker) in ([due.pk], [abandoned.pk])  # one drain task: it attempts every due delivery
    assert webhook_deliveries_requeue() == 1  # the due one waits a stale period before its next publish


def test_a_delivery_left_sending_by_a_dead_worker_is_sent_again_after_the_lease(receiver, workspace):
    endpoint_for(workspace, receiver.url)
    [delivery] = record_event(workspace)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status="sending", attempts=1, claimed_at=timezone.now() - timedelta(seconds=30)
    )
    assert webhook_deliver(delivery_id=delivery.pk) == "sending"  # its lease still runs
    assert receiver.calls == 0

    WebhookDelivery.objects.filter(pk=delivery.pk).update(claimed_at=timezone.now() - timedelta(minutes=2))
    assert webhook_deliver(delivery_id=delivery.pk) == "delivered"
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and receiver.calls == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_given_the_same_delivery_call_the_receiver_once(receiver, workspace):
    endpoint_for(workspace, receiver.url)
    [delivery] = record_event(workspace)
    receiver.reply(Reply(200, delay=0.5))

    outcomes = run_together(2, lambda _: webhook_deliver(delivery_id=delivery.pk))

    assert "delivered" in outcomes and receiver.calls == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 1


def test_the_purge_deletes_finished_deliveries_past_the_retention(workspace):
    endpoint_for(workspace, "https://example.com/hooks")
    old_done, old_given_up, recent, pending = [record_event(workspace)[0] for _ in range(4)]
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=old_done.pk).update(status="delivered", finished_at=now - timedelta(days=8))
    WebhookDelivery.objects.filter(pk=old_given_up.pk).update(status="given_up", finished_at=now - timedelta(days=8))
    WebhookDelivery.objects.filter(pk=recent.pk).update(status="delivered", finished_at=now - timedelta(days=6))
    WebhookDelivery.objects.filter(pk=pending.pk).update(created_at=now - timedelta(days=30))

    assert webhook_deliveries_purge() == 2
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {recent.pk, pending.pk}


def test_one_drain_attempts_every_due_delivery_once_and_settles_each(settings, workspace, broker):
    """What each `webhooks.tasks.deliver` runs: the due deliveries of every endpoint, their calls in flight on
    the process's threads, each outcome recorded in the task's own connection."""
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_SEND_CONCURRENCY = 4  # fewer than the deliveries: the drain claims again as calls end
    good, bad = Receiver().start(), Receiver().start()
    bad.reply(*[Reply(status=500, delay=0.05) for _ in range(5)])
    good.reply(*[Reply(delay=0.05) for _ in range(5)])
    try:
        endpoint_for(workspace, good.url)
        endpoint_for(workspace, bad.url)
        deliveries = [delivery for _ in range(5) for delivery in record_event(workspace)]
        not_due = record_event(workspace)  # due later: left alone
        WebhookDelivery.objects.filter(pk__in=[d.pk for d in not_due]).update(
            next_attempt_at=timezone.now() + timedelta(minutes=5)
        )

        assert webhook_drain() == 5
    finally:
        good.stop()
        bad.stop()
    assert (good.calls, bad.calls) == (5, 5)
    rows = WebhookDelivery.objects.filter(pk__in=[d.pk for d in deliveries])
    assert sorted(rows.values_list("status", "attempts")) == [("delivered", 1)] * 5 + [("pending", 1)] * 5
    assert set(WebhookDelivery.objects.filter(pk__in=[d.pk for d in not_due]).values_list("attempts", flat=True)) == {0}
    assert len({request.headers["webhook-id"] for request in good.requests}) == 5  # each once

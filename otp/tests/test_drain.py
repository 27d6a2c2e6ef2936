"""The SMS drain (otp.delivery.sms_drain): many outbox rows per task, their gateway calls in flight together.

In-process first (the claim, the outcomes, the nudge that asks for a drain), then through a real
`celery -A zeckta worker` subprocess on the test database, against the fake HTTP provider over a socket:
a hundred calls held open at once by one worker process that holds one database connection, and a worker
killed with a batch in flight that loses nothing and sends nothing twice.
"""

import base64
import json
import threading
from collections import Counter
from datetime import datetime, timedelta

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from otp.delivery import SMS_DRAIN_KEY, SMS_DRAIN_TASK, SMS_QUEUE, sms_drain, sms_drain_nudge
from otp.models import OtpSession, SmsAttempt, SmsMessage
from otp.services import otp_request
from otp.tests.helpers import request_otp
from senders.tests.fake_gateway import Answer
from workspaces.models import FraudGuardMode
from workspaces.tests.factories import issue_key
from zeckta.testing import api_client, free_port, wait_for

WAIT_SECONDS = 30  # an upper bound for polling, not a timing assertion


def numbers(count: int) -> list[str]:
    return [f"+2332020{index:05d}" for index in range(count)]


@pytest.fixture(autouse=True)
def _no_nudge_left(settings):
    """A nudge key a test left (some set a long window) would keep the next test's requests from asking."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(SMS_DRAIN_KEY)
    yield
    client.delete(SMS_DRAIN_KEY)


def busy(workspace) -> None:
    # Many new numbers of one range within seconds: pumping to the fraud guard (its own tests watch that),
    # past the per-destination limit's default too. These tests watch the outbox.
    workspace.destination_limit = 100
    workspace.fraud_guard_mode = FraudGuardMode.OFF
    workspace.save(update_fields=["destination_limit", "fraud_guard_mode"])


@pytest.fixture
def busy_api(workspace, sender):
    """An APIClient for many requests a second: a key allowing them, the fraud guard off."""
    busy(workspace)
    return api_client(issue_key(workspace, tps=10_000)[1])


def queue_otps(workspace, count: int) -> list[SmsMessage]:
    """Outbox rows exactly as requests leave them (no commit here: nothing asks for a drain)."""
    busy(workspace)
    for dest in numbers(count):
        otp_request(workspace=workspace, dest=dest, src="ZECKTA", purpose="LOGIN")
    return list(SmsMessage.objects.order_by("id"))


def task_envelopes(broker) -> list[dict]:
    """The messages waiting in the sms queue, as kombu wrote them (headers: task, eta, ...)."""
    return [json.loads(raw) for raw in broker.lrange(SMS_QUEUE, 0, -1)]


def queued_tasks(broker) -> list[tuple[str, list]]:
    """The tasks waiting in the sms queue: (name, positional arguments)."""
    return [
        (envelope["headers"]["task"], json.loads(base64.b64decode(envelope["body"]))[0])
        for envelope in task_envelopes(broker)
    ]


# --- in process ----------------------------------------------------------------------------------------


def test_one_drain_sends_every_due_row_once_with_its_attempt(fake_gateway, settings, workspace, sender):
    settings.SMS_SEND_CONCURRENCY = 8  # fewer than the rows: the drain claims again as calls finish
    fake_gateway.answer(*[Answer(200, delay=0.05) for _ in range(20)])
    messages = queue_otps(workspace, 20)

    result = sms_drain()

    assert (result.sent, result.settled) == (20, 20)
    assert result.claims >= 3  # 20 rows, 8 in flight at most
    assert Counter(SmsMessage.objects.values_list("status", "attempts")) == {("sent", 1): 20}
    assert not SmsMessage.objects.exclude(encrypted_text=None).exists()
    references = Counter(request.json["reference"] for request in fake_gateway.requests)
    assert references == Counter(str(message.public_id) for message in messages)
    assert SmsAttempt.objects.filter(status="accepted").count() == 20


def test_a_drain_settles_each_outcome_as_sms_deliver_would(fake_gateway, settings, workspace, sender):
    settings.SMS_RETRY_BACKOFF_SECONDS = 30  # the retry stays in the row, past this drain
    fake_gateway.answer(Answer(503), Answer(422, {"error": "blocked"}), Answer(200, {"id": "ok"}))
    settings.SMS_SEND_CONCURRENCY = 1  # one call at a time: the script's answers go to the rows in order
    first, second, third = queue_otps(workspace, 3)

    result = sms_drain()

    statuses = {m.pk: (m.status, m.attempts) for m in SmsMessage.objects.all()}
    assert statuses == {first.pk: ("queued", 1), second.pk: ("failed", 1), third.pk: ("sent", 1)}
    assert (result.sent, result.settled) == (1, 3)
    first.refresh_from_db()
    assert "503" in first.last_error and first.claimed_at is None and first.encrypted_text is not None


def test_each_row_a_drain_puts_off_gets_a_drain_at_its_own_time(
    fake_gateway, broker_queue, settings, workspace, sender
):
    """Two retries due 0.6 s apart: a drain for each. One drain for the earliest alone found the other not yet
    due and ended, and that SMS waited for the sweeper."""
    settings.SMS_RETRY_BACKOFF_SECONDS = 1
    fake_gateway.answer(Answer(503), Answer(503, delay=0.6))  # the second call fails 0.6 s after the first
    queue_otps(workspace, 2)
    published_after = timezone.now() + timedelta(seconds=1)

    sms_drain()

    dues = sorted(SmsMessage.objects.filter(status="queued", attempts=1).values_list("next_attempt_at", flat=True))
    drains = [envelope for envelope in task_envelopes(broker_queue) if envelope["headers"]["task"] == SMS_DRAIN_TASK]
    etas = sorted(datetime.fromisoformat(envelope["headers"]["eta"]) for envelope in drains)
    assert len(dues) == 2 and dues[1] - dues[0] > timedelta(seconds=0.5)
    assert len(etas) == 2, (dues, etas)
    for eta, due in zip(etas, dues, strict=True):
        # Just past the row's time (computed on the monotonic clock, hence the margin), not a moment later.
        assert due - timedelta(milliseconds=50) <= eta <= due + timedelta(milliseconds=300)
    assert etas[0] > published_after


def test_rows_of_dead_otps_are_settled_by_the_drain_and_never_sent(fake_gateway, workspace, sender):
    dead, live = queue_otps(workspace, 2)
    OtpSession.objects.filter(pk=dead.session_id).update(status="CANCELLED")

    result = sms_drain()

    assert result.sent == 1
    assert SmsMessage.objects.get(pk=dead.pk).status == "expired"
    assert SmsMessage.objects.get(pk=live.pk).status == "sent"
    assert [request.json["reference"] for request in fake_gateway.requests] == [str(live.public_id)]


@pytest.mark.django_db(transaction=True)  # the holder's own connection sees the rows
def test_a_row_claimed_by_someone_else_is_skipped_not_waited_for(fake_gateway, broker_queue, workspace, sender):
    """Two drainers never wait on each other: a row another transaction holds locked is left to it."""
    held, free = queue_otps(workspace, 2)
    locked = threading.Event()
    release = threading.Event()

    def hold_lock() -> None:
        from django.db import connection as own
        from django.db import transaction

        try:
            with transaction.atomic():
                SmsMessage.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(timeout=WAIT_SECONDS)
        finally:
            own.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(timeout=WAIT_SECONDS)
        result = sms_drain()
    finally:
        release.set()
        holder.join()

    assert result.sent == 1
    assert SmsMessage.objects.get(pk=free.pk).status == "sent"
    assert SmsMessage.objects.get(pk=held.pk).status == "queued"


@pytest.mark.django_db(transaction=True)
def test_many_requests_ask_for_few_drains_and_a_request_after_a_drain_asks_again(broker_queue, settings, busy_api):
    settings.SMS_DRAIN_NUDGE_MS = 60_000  # one window for the whole test: the coalescing, not the clock
    api = busy_api

    for dest in numbers(20):
        assert request_otp(api, dest).status_code == 200

    assert queued_tasks(broker_queue) == [(SMS_DRAIN_TASK, [])]  # twenty SMS, one task, no argument
    assert sms_drain().sent == 20  # what the worker does with it: it clears the key before it claims
    assert request_otp(api, "+233209999999").status_code == 200  # committed after the drain's last claim
    assert queued_tasks(broker_queue) == [(SMS_DRAIN_TASK, []), (SMS_DRAIN_TASK, [])]
    assert sms_drain().sent == 1


@pytest.mark.django_db(transaction=True)
def test_requests_while_a_drain_works_publish_nothing_and_the_drain_sends_their_sms(
    broker_queue, settings, fake_gateway, busy_api
):
    settings.SMS_DRAIN_NUDGE_MS = 10_000  # the drain's hold outlives any pause of this busy machine
    settings.SMS_HTTP_TIMEOUT = WAIT_SECONDS  # the held call outlives the requests made meanwhile
    key = redis.Redis.from_url(settings.REDIS_URL)
    held = threading.Event()
    fake_gateway.answer(Answer(200, hold=held))  # the first call hangs: the drain is at work meanwhile
    assert request_otp(busy_api, "+233203000001").status_code == 200
    broker_queue.delete(SMS_QUEUE)
    key.delete(SMS_DRAIN_KEY)  # as if the request's own window had passed: only the drain can set it now
    outcome = {}

    def drain() -> None:
        try:
            outcome["result"] = sms_drain()
        finally:
            connection.close()

    drainer = threading.Thread(target=drain)
    drainer.start()
    try:
        wait_for(lambda: len(fake_gateway.requests) == 1, timeout=WAIT_SECONDS)
        for dest in numbers(5):
            assert request_otp(busy_api, dest).status_code == 200
        published_meanwhile = queued_tasks(broker_queue)
    finally:
        held.set()
        drainer.join(timeout=WAIT_SECONDS)

    assert published_meanwhile == []  # the drain held the key: its next claim follows their commits
    assert outcome["result"].sent == 6
    assert not SmsMessage.objects.exclude(status="sent").exists()
    assert not key.exists(SMS_DRAIN_KEY)  # let go before its last look: the next request asks again
    assert request_otp(busy_api, "+233209999999").status_code == 200
    assert queued_tasks(broker_queue) == [(SMS_DRAIN_TASK, [])]


def test_a_drain_out_of_time_lets_go_of_the_key_and_hands_over_to_a_fresh_task(broker_queue, settings):
    key = redis.Redis.from_url(settings.REDIS_URL)
    key.set(SMS_DRAIN_KEY, b"1")

    sms_drain(seconds=0)

    assert not key.exists(SMS_DRAIN_KEY)
    assert queued_tasks(broker_queue) == [(SMS_DRAIN_TASK, [])]  # it cannot know what came after its last claim


def test_calls_that_end_together_settle_in_one_statement(fake_gateway, settings, workspace, sender, monkeypatch):
    monkeypatch.setattr("otp.delivery.SMS_SETTLE_GATHER_SECONDS", WAIT_SECONDS)  # the whole wave, not a moment of it
    answered = threading.Event()
    fake_gateway.answer(*[Answer(200, {"id": f"p{index}"}, hold=answered) for index in range(10)])
    messages = queue_otps(workspace, 10)
    threading.Thread(
        target=lambda: wait_for(lambda: len(fake_gateway.requests) == 10, timeout=WAIT_SECONDS) and answered.set()
    ).start()

    with CaptureQueriesContext(connection) as statements:
        result = sms_drain()

    assert (result.sent, result.settled) == (10, 10)
    settles = [query["sql"] for query in statements if "INSERT INTO" in query["sql"]]
    assert len(settles) == 1  # ten rows and ten attempts
    sent = SmsMessage.objects.values_list("pk", "status", "provider_message_id", "encrypted_text", "finished_at")
    assert {(pk, status, text) for pk, status, _, text, _ in sent} == {(m.pk, "sent", None) for m in messages}
    assert sorted(provider_id for _, _, provider_id, _, _ in sent) == sorted(f"p{index}" for index in range(10))
    attempts = SmsAttempt.objects.values_list("message_id", "status", "provider_message_id", "finished_at")
    assert Counter((message_id, status) for message_id, status, _, _ in attempts) == {
        (m.pk, "accepted"): 1 for m in messages
    }
    assert all(finished for *_, finished in attempts)


def test_a_wave_settles_only_the_rows_this_drain_still_holds(fake_gateway, workspace, sender, monkeypatch):
    """A row whose lease ran out and that another worker claimed again keeps that worker's claim; the call
    this drain made is still on record as an attempt."""
    from otp import delivery

    taken_over = {}
    real_settle = delivery._settle_sent_many

    def another_worker_claims_one_first(sends):
        first = sends[0][0]
        SmsMessage.objects.filter(pk=first.pk).update(claimed_at=timezone.now())  # a later claim than ours
        taken_over[first.pk] = True
        settled = real_settle(sends)
        taken_over["settled"] = settled
        return settled

    monkeypatch.setattr(delivery, "_settle_sent_many", another_worker_claims_one_first)
    monkeypatch.setattr("otp.delivery.SMS_SETTLE_GATHER_SECONDS", WAIT_SECONDS)
    queue_otps(workspace, 3)

    sms_drain()

    statuses = Counter(SmsMessage.objects.values_list("status", flat=True))
    assert statuses == {"sent": 3 - 1, "processing": 1}
    assert SmsAttempt.objects.filter(status="accepted").count() == 3
    assert taken_over["settled"] == 3 - 1


@pytest.mark.django_db(transaction=True)
def test_without_redis_for_the_nudge_a_request_still_publishes_its_drain(broker_queue, api, caplog, monkeypatch):
    unreachable = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    monkeypatch.setattr("zeckta.nudge.nudge_redis", lambda: unreachable)  # the key cannot be set

    assert request_otp(api, "+233202007746").status_code == 200

    assert queued_tasks(broker_queue) == [(SMS_DRAIN_TASK, [])]  # the broker still takes the task
    assert "could not set the SMS drain nudge" in caplog.text


def test_a_nudge_while_the_key_is_set_publishes_nothing(broker_queue, settings):
    settings.SMS_DRAIN_NUDGE_MS = 60_000

    for _ in range(5):
        sms_drain_nudge()

    assert queued_tasks(broker_queue) == [(SMS_DRAIN_TASK, [])]


# --- a real worker process -----------------------------------------------------------------------------


def database_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def connections_opened_since(moment) -> int:
    """Sessions on the test database opened after `moment` (the worker's: this test's own is older)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_start > %s",
            [moment],
        )
        return cursor.fetchone()[0]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_one_worker_process_holds_a_hundred_calls_in_flight_on_one_database_connection(
    fake_gateway, broker_queue, start_worker, busy_api
):
    """The worker as the contract starts it runs its tasks in processes: one of them, with one connection to
    PostgreSQL, keeps every call in flight while the provider takes its time."""
    api = busy_api
    release = threading.Event()
    fake_gateway.answer(*[Answer(200, hold=release) for _ in range(100)])
    # --concurrency 1: one process sends; the provider's hold, not the client's timeout, ends the calls.
    before_the_worker = database_now()
    start_worker(gateway=fake_gateway, pool="prefork", SMS_HTTP_TIMEOUT="20")

    try:
        for dest in numbers(100):
            assert request_otp(api, dest).status_code == 200
        assert wait_for(lambda: fake_gateway.calls == 100, timeout=WAIT_SECONDS), fake_gateway.calls
        in_flight_connections = connections_opened_since(before_the_worker)
        assert SmsMessage.objects.filter(status="processing").count() == 100  # all held by the provider at once
    finally:
        release.set()

    assert in_flight_connections <= 1  # the drain's own; none for the hundred calls
    assert wait_for(lambda: SmsMessage.objects.filter(status="sent").count() == 100, timeout=WAIT_SECONDS)
    assert SmsAttempt.objects.filter(status="accepted").count() == 100
    assert max(Counter(request.json["reference"] for request in fake_gateway.requests).values()) == 1


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_worker_killed_mid_batch_loses_nothing_and_sends_nothing_twice(
    fake_gateway, broker_queue, start_worker, busy_api
):
    """Thirty SMS in flight on one worker: the provider answers ten at once and holds twenty when the worker
    is SIGKILLed. The ten settled are never sent again; the twenty, still `processing`, are claimed again
    once their lease is over (by a new worker's sweeper and drain) and sent with the same reference and text
    (the provider's idempotency key: the call the dead worker made and this one are one SMS to it)."""
    api = busy_api
    release = threading.Event()
    fake_gateway.answer(*[Answer(200) for _ in range(10)], *[Answer(503, hold=release) for _ in range(20)])
    limits = {  # a short lease (seconds): the held rows are claimed again soon after the kill
        "SMS_TASK_SOFT_TIME_LIMIT_SECONDS": "9",
        "SMS_TASK_TIME_LIMIT_SECONDS": "10",
        "SMS_PROCESSING_LEASE_SECONDS": "11",
        "SMS_HTTP_TIMEOUT": "20",  # the held calls are still waiting when the worker dies
    }
    first = start_worker(gateway=fake_gateway, **limits)

    for dest in numbers(30):
        assert request_otp(api, dest).status_code == 200
    assert wait_for(
        lambda: fake_gateway.calls == 30 and SmsMessage.objects.filter(status="sent").count() == 10,
        timeout=WAIT_SECONDS,
    ), (fake_gateway.calls, Counter(SmsMessage.objects.values_list("status", flat=True)))
    first.kill()
    release.set()  # the provider answers the held calls now, to a caller that is gone
    settled_first = set(SmsMessage.objects.filter(status="sent").values_list("public_id", flat=True))
    assert Counter(SmsMessage.objects.values_list("status", "attempts")) == {("sent", 1): 10, ("processing", 1): 20}

    start_worker(gateway=fake_gateway, beat=True, TEST_BEAT_INTERVAL_SECONDS="1", **limits)

    assert wait_for(lambda: SmsMessage.objects.filter(status="sent").count() == 30, timeout=WAIT_SECONDS), Counter(
        SmsMessage.objects.values_list("status", flat=True)
    )
    calls = Counter(request.json["reference"] for request in fake_gateway.requests)
    assert {calls[str(public_id)] for public_id in settled_first} == {1}  # sent once, never again
    held = set(SmsMessage.objects.exclude(public_id__in=settled_first).values_list("public_id", flat=True))
    assert {calls[str(public_id)] for public_id in held} == {2}  # the dead worker's call and the one accepted
    assert sum(calls.values()) == 50
    texts = {}
    for request in fake_gateway.requests:
        texts.setdefault(request.json["reference"], set()).add(request.json["text"])
    assert all(len(same) == 1 for same in texts.values())  # the same code both times
    assert Counter(SmsMessage.objects.values_list("attempts", flat=True)) == {1: 10, 2: 20}

"""Delivering webhook events from the outbox: publish, claim, sign and send, settle, requeue, purge.

The design of `otp.delivery`: a row per message is the source of truth, tasks carry only its id, a worker
claims it with one conditional UPDATE before the call and records the outcome after it. Retries wait
in the row (`next_attempt_at`), not in the broker: a short one is also published with a countdown, a
long one (up to 3 h) is left to the beat sweeper, which runs every 30 s.
"""

import logging
import os
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from datetime import datetime, timedelta
from functools import partial

from celery.exceptions import SoftTimeLimitExceeded
from cryptography.fernet import InvalidToken
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.signing import secret_decrypt, signature_header
from webhooks.transport import Answer, post
from zeckta import metrics
from zeckta.celery import app as celery_app
from zeckta.nudge import DrainNudge

logger = logging.getLogger(__name__)

Status = WebhookDelivery.Status

# The registered names of the tasks in `webhooks.tasks`: what the broker and the beat schedule hold.
WEBHOOK_DELIVER_TASK = "webhooks.tasks.deliver"
WEBHOOK_REQUEUE_DUE_TASK = "webhooks.tasks.requeue_due_deliveries"
WEBHOOK_PURGE_TASK = "webhooks.tasks.purge_old_deliveries"
# The queue settings.CELERY_TASK_ROUTES gives WEBHOOK_DELIVER_TASK: a slow receiver never delays an SMS.
WEBHOOKS_QUEUE = "webhooks"
# The webhook drainers' nudge key (zeckta.nudge): set by a writer that asks for a drain, held by a working drain.
WEBHOOK_DRAIN_KEY = "zeckta:webhooks:drain"

# A retry this soon is also published with a countdown; a later one waits for the sweeper (seconds).
COUNTDOWN_MAX_SECONDS = 60
# A countdown task may start a moment before the due time its publisher computed (clocks of two machines).
CLOCK_TOLERANCE = timedelta(seconds=1)
JITTER = 0.2  # each retry delay is drawn within +-20 % of its value, so one outage's retries spread out
USER_AGENT = "Zeckta-Webhooks/1.0"


def webhook_deliveries_enqueue_on_commit(*, delivery_ids: list[int]) -> None:
    """Asks for a drain once the caller's transaction commits (a worker never looks for a row not yet there),
    coalesced: a burst of events publishes one task, and none while a drain is at work (zeckta.nudge)."""
    if delivery_ids:
        transaction.on_commit(WEBHOOK_NUDGE.ask)


def webhook_deliveries_enqueue(*, delivery_ids: list[int], countdown: float = 0) -> None:
    """Publishes one drain task for these deliveries (now, or in `countdown` seconds): it attempts every
    delivery due when it runs, these included. Never raises; a lost publish is picked up by the sweeper."""
    if delivery_ids:
        _drain_publish(args=[delivery_ids[0]], countdown=countdown)


def _drain_publish(*, args: list[int] | None = None, countdown: float = 0) -> None:
    try:
        # By name: `webhooks.tasks` imports this module. The anonymous exchange: one round trip to Redis.
        celery_app.tasks[WEBHOOK_DELIVER_TASK].apply_async(
            args=args or [], countdown=countdown or None, exchange="", routing_key=WEBHOOKS_QUEUE
        )
    except Exception:
        logger.warning("could not publish the webhook drain task; the sweeper will retry", exc_info=True)


WEBHOOK_NUDGE = DrainNudge(WEBHOOK_DRAIN_KEY, what="webhook drain", publish=lambda: _drain_publish())


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed attempt: about 5 s, 30 s, 2 min, 10 min, 1 h, then
    3 h each time, with jitter."""
    delays = settings.WEBHOOK_RETRY_DELAYS_SECONDS
    return delays[min(max(attempts, 1), len(delays)) - 1] * random.uniform(1 - JITTER, 1 + JITTER)


def webhook_deliver(*, delivery_id: int) -> str:
    """Makes one attempt of a delivery that is due; returns its status afterwards.

    The claim (`pending` -> `sending`, attempts + 1) comes before the call: a second worker given the same
    id finds nothing to claim, and a worker killed mid-call leaves `sending`, which the sweeper hands out
    again once WEBHOOK_PROCESSING_LEASE_SECONDS have passed (at least once: the receiver may then see the
    same webhook-id twice, as Standard Webhooks allows).
    """
    now = timezone.now()
    if not _claim(delivery_id, now=now):
        status = WebhookDelivery.objects.filter(pk=delivery_id).values_list("status", flat=True).first()
        return status or "missing"
    # The INNER JOIN finds no row when the endpoint was deleted while the event was being recorded.
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id, claimed_at=now).first()
    if delivery is None:
        WebhookDelivery.objects.filter(pk=delivery_id, claimed_at=now).delete()
        return "dropped"
    prepared = _prepare(delivery, now=now)
    if isinstance(prepared, Answer):
        return _settle(delivery, delivery.endpoint, prepared)
    try:
        answer = post(delivery.endpoint.url, body=delivery.body.encode(), headers=prepared)
    except SoftTimeLimitExceeded:
        # The task's soft time limit (settings.CELERY_TASK_ANNOTATIONS), say in a resolver that hung:
        # a failed attempt like a time-out, retried on the schedule rather than left to the lease.
        answer = Answer(None, SOFT_LIMIT_ERROR)
    return _settle(delivery, delivery.endpoint, answer)


SOFT_LIMIT_ERROR = "the attempt ran out of time (the task's soft time limit)"


def _prepare(delivery: WebhookDelivery, *, now: datetime) -> dict[str, str] | Answer:
    """The signed headers of a claimed delivery's call, or the failed attempt's Answer when it cannot be
    signed."""
    try:
        secrets_ = _signing_secrets(delivery.endpoint, now=now)
    except InvalidToken:
        # WEBHOOK_ENCRYPTION_KEY (or SECRET_KEY/OTP_HASH_KEY) changed: retried like a failure, so that the
        # endpoint ends up failing in the admin rather than the message vanishing.
        return Answer(None, "the signing secret cannot be decrypted with the current key")
    timestamp = int(now.timestamp())
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": delivery.webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            secrets_=secrets_, webhook_id=delivery.webhook_id, timestamp=timestamp, body=delivery.body
        ),
    }


def webhook_drain(*, seconds: float | None = None) -> int:
    """Makes one attempt of every delivery that is due, up to WEBHOOK_SEND_CONCURRENCY calls in flight on
    the process's thread pool (HTTP only: claiming, signing and settling stay in this task's database
    connection). Returns how many were delivered. Claims again while calls are in flight (every
    SMS_DRAIN_POLL_MS at most); stops claiming after a third of the task's soft time limit. The claim is
    `_claim`'s conditions on many rows at once, FOR UPDATE SKIP LOCKED: two drains never wait on each other.
    Each claim holds the nudge key (zeckta.nudge), so events recorded meanwhile publish no task; the drain
    lets go of it before its last claim.
    """
    capacity = max(settings.WEBHOOK_SEND_CONCURRENCY, 1)
    poll = settings.SMS_DRAIN_POLL_MS / 1000
    if seconds is None:
        seconds = settings.WEBHOOK_TASK_SOFT_TIME_LIMIT_SECONDS / 3
    stop_at = time.monotonic() + seconds
    pool = _call_pool()
    in_flight: dict[Future[Answer], WebhookDelivery] = {}
    delivered = 0
    last_claim = -1.0
    full = True  # the last claim filled its room: claim again at once
    released = False  # whether this drain let go of the nudge key: its next claim is its last if it finds nothing

    def settle(delivery: WebhookDelivery, answer: Answer) -> None:
        nonlocal delivered
        if _settle(delivery, delivery.endpoint, answer) == Status.DELIVERED:
            delivered += 1

    while True:
        moment = time.monotonic()
        room = capacity - len(in_flight)
        if room > 0 and moment < stop_at and (full or moment - last_claim >= poll):
            last_claim = moment
            if not released:
                WEBHOOK_NUDGE.hold()  # writers committing from now on leave their rows to this drain's next claim
            claimed = _claim_due(room)
            full = len(claimed) >= room
            for delivery in claimed:
                prepared = _prepare(delivery, now=delivery.claimed_at or timezone.now())
                if isinstance(prepared, Answer):
                    settle(delivery, prepared)
                    continue
                call = partial(post, delivery.endpoint.url, body=delivery.body.encode(), headers=prepared)
                in_flight[pool.submit(call)] = delivery
            if not claimed and not in_flight:
                if released:
                    break  # nothing due after letting go of the key: from now on a writer publishes for itself
                WEBHOOK_NUDGE.release()  # a writer that found the key held committed before this: look once more
                released, full = True, True
                continue
            released = False
        elif not in_flight:
            if moment >= stop_at:
                # Claiming is over and nothing is in flight: a writer may have committed after the last claim,
                # finding the key held, so a fresh task goes on.
                WEBHOOK_NUDGE.release()
                _drain_publish()
                break
            time.sleep(max(poll - (moment - last_claim), 0.001))
            continue
        if not in_flight:
            continue
        try:
            done, _ = futures_wait(in_flight, timeout=poll, return_when=FIRST_COMPLETED)
        except SoftTimeLimitExceeded:
            for delivery in in_flight.values():
                settle(delivery, Answer(None, SOFT_LIMIT_ERROR))
            WEBHOOK_NUDGE.release()
            _drain_publish()
            break
        for future in done:
            delivery = in_flight.pop(future)
            try:
                answer = future.result()
            except Exception:
                # `post` answers for what the receiver or the network does; anything else is a bug: the
                # delivery stays claimed until its lease ends, and the others go on.
                logger.exception("webhook %s: the call raised", delivery.webhook_id)
                continue
            settle(delivery, answer)
    return delivered


def _claim_due(limit: int) -> list[WebhookDelivery]:
    """Claims up to `limit` due deliveries with their endpoints; drops the claimed ones whose endpoint is
    gone (deleted while the event was being recorded)."""
    now = timezone.now()
    lease_over = now - timedelta(seconds=settings.WEBHOOK_PROCESSING_LEASE_SECONDS)
    table = WebhookDelivery._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %(sending)s, claimed_at = %(now)s, attempts = attempts + 1,"
            f" updated_at = %(now)s WHERE id IN (SELECT id FROM {table}"
            f" WHERE (status = %(pending)s AND next_attempt_at <= %(due)s)"
            f" OR (status = %(sending)s AND claimed_at < %(lease_over)s)"
            f" ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) RETURNING id",
            {
                "sending": Status.SENDING,
                "pending": Status.PENDING,
                "now": now,
                "due": now + CLOCK_TOLERANCE,
                "lease_over": lease_over,
                "limit": limit,
            },
        )
        ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return []
    claimed = list(WebhookDelivery.objects.select_related("endpoint").filter(pk__in=ids, claimed_at=now))
    if len(claimed) < len(ids):
        WebhookDelivery.objects.filter(pk__in=set(ids) - {d.pk for d in claimed}, claimed_at=now).delete()
    return claimed


_pool_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _call_pool() -> ThreadPoolExecutor:
    """The process's threads for webhook calls, built in the process that uses them (after a fork)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(settings.WEBHOOK_SEND_CONCURRENCY, thread_name_prefix="webhook"))
        return _pool[1]


def _claim(delivery_id: int, *, now: datetime) -> bool:
    # The conditions are on the updated row itself, which PostgreSQL re-checks against the committed
    # version when it waited for another worker's claim: of two workers, one claims.
    lease_over = now - timedelta(seconds=settings.WEBHOOK_PROCESSING_LEASE_SECONDS)
    return bool(
        WebhookDelivery.objects.filter(pk=delivery_id)
        .filter(
            Q(status=Status.PENDING, next_attempt_at__lte=now + CLOCK_TOLERANCE)
            | Q(status=Status.SENDING, claimed_at__lt=lease_over)
        )
        .update(status=Status.SENDING, claimed_at=now, attempts=F("attempts") + 1, updated_at=now)
    )


def _signing_secrets(endpoint: WebhookEndpoint, *, now: datetime) -> list[str]:
    """The current secret, and the previous one while its overlap lasts."""
    secrets_ = [secret_decrypt(endpoint.encrypted_secret)]
    expires_at = endpoint.previous_secret_expires_at
    if endpoint.encrypted_previous_secret is not None and expires_at is not None and expires_at > now:
        secrets_.append(secret_decrypt(endpoint.encrypted_previous_secret))
    return secrets_


def _settle(delivery: WebhookDelivery, endpoint: WebhookEndpoint, answer: Answer) -> str:
    """Records the attempt's outcome, while this worker's claim holds (else another worker's stands)."""
    done = timezone.now()
    mine = WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.SENDING, claimed_at=delivery.claimed_at)
    outcome = {"last_status_code": answer.status, "last_error": answer.error[:500], "updated_at": done}
    endpoints = WebhookEndpoint.objects.filter(pk=endpoint.pk)
    if answer.accepted:
        with transaction.atomic():
            if mine.update(status=Status.DELIVERED, finished_at=done, **outcome) and endpoint.failing:
                endpoints.filter(failing_since__isnull=False).update(failing_since=None, updated_at=done)
        metrics.WEBHOOK_DELIVERIES.labels(outcome="delivered").inc()
        logger.info("webhook %s delivered (attempt %s, HTTP %s)", delivery.webhook_id, delivery.attempts, answer.status)
        return Status.DELIVERED
    if done >= delivery.retry_until:
        with transaction.atomic():
            if mine.update(status=Status.GIVEN_UP, finished_at=done, **outcome):
                endpoints.filter(failing_since__isnull=True).update(failing_since=done, updated_at=done)
        metrics.WEBHOOK_DELIVERIES.labels(outcome="given_up").inc()
        logger.warning(
            "webhook %s given up after %s attempts: %s; endpoint %s marked failing",
            delivery.webhook_id,
            delivery.attempts,
            answer.error,
            endpoint.public_id,
        )
        return Status.GIVEN_UP
    # The last retry falls on the window's end rather than beyond it.
    next_at = min(done + timedelta(seconds=retry_delay(delivery.attempts)), delivery.retry_until)
    wait = (next_at - done).total_seconds()
    if mine.update(status=Status.PENDING, next_attempt_at=next_at, **outcome) and wait <= COUNTDOWN_MAX_SECONDS:
        webhook_deliveries_enqueue(delivery_ids=[delivery.pk], countdown=wait)
    metrics.WEBHOOK_DELIVERIES.labels(outcome="retrying").inc()
    logger.info(
        "webhook %s attempt %s failed (%s); next in %.0fs", delivery.webhook_id, delivery.attempts, answer.error, wait
    )
    return Status.PENDING


def webhook_deliveries_requeue(*, limit: int = 500) -> int:
    """Publishes deliveries that are due and that no task will take: a retry left to the sweeper, a lost
    publish, a worker that died mid-call. Returns how many."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.WEBHOOK_STALE_AFTER_SECONDS)
    lease_over = now - timedelta(seconds=settings.WEBHOOK_PROCESSING_LEASE_SECONDS)
    ids = list(
        WebhookDelivery.objects.filter(
            Q(status=Status.PENDING, next_attempt_at__lte=stale) | Q(status=Status.SENDING, claimed_at__lt=lease_over)
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    if ids:
        # Not published again until another stale period passes, so a backlog does not flood the queue.
        WebhookDelivery.objects.filter(pk__in=ids, status=Status.PENDING).update(next_attempt_at=now)
        webhook_deliveries_enqueue(delivery_ids=ids)
    return len(ids)


def webhook_deliveries_purge(*, older_than_days: int | None = None) -> int:
    """Deletes deliveries finished (delivered or given up) longer ago than the retention, and wipes
    previous secrets past their overlap; returns how many deliveries went."""
    now = timezone.now()
    days = older_than_days if older_than_days is not None else settings.WEBHOOK_RETENTION_DAYS
    deleted, _ = WebhookDelivery.objects.filter(
        status__in=WebhookDelivery.FINISHED, finished_at__lt=now - timedelta(days=days)
    ).delete()
    WebhookEndpoint.objects.filter(previous_secret_expires_at__lte=now).update(
        encrypted_previous_secret=None, previous_secret_expires_at=None, updated_at=now
    )
    return deleted

"""Delivering SMS from the outbox: publish, claim, send through the gateway, settle, requeue.

OTP SMS and relayed SMS (otp.relay: no session, a deadline of their own) take the same path; only the
claim and the check of whether the SMS may still go out differ.

The request path only calls `sms_enqueue_on_commit`; workers run `sms_deliver` (through `otp.tasks`) and
the beat runs `sms_requeue_stale`.
"""

import logging
import os
import threading
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from cryptography.fernet import InvalidToken
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from otp.crypto import decrypt_text
from otp.events import Event, otp_sms_event_emit, otp_sms_event_type
from otp.fallback_trigger import fallback_now
from otp.models import OtpSession, SmsAttempt, SmsMessage
from otp.partitions import CLOCK_SKEW, MAX_VALIDITY
from otp.receipts import early_receipts_apply, receipt_lock
from senders.gateways import (
    GatewayError,
    GatewayResult,
    OutgoingSms,
    PermanentGatewayError,
    SmsGateway,
    TransientGatewayError,
)
from senders.routes import RouteChoice, route_rate_wait, routes_for
from webhooks.selectors import webhook_subscribed
from workspaces.billing import balance_credit
from workspaces.models import LedgerEntry
from zeckta import metrics
from zeckta.api.context import log_context_update
from zeckta.celery import app as celery_app
from zeckta.channels import DEFAULT_LOCALE
from zeckta.db import columns_of, db_value, instance_from_row
from zeckta.nudge import DrainNudge

logger = logging.getLogger(__name__)

SmsStatus = SmsMessage.Status
SessionStatus = OtpSession.Status

# The registered names of the tasks in `otp.tasks`. They are what the broker and the beat schedule hold,
# so they stay the same when a Python name changes: a task queued before a deploy still runs after it.
SMS_DELIVER_TASK = "otp.tasks.send_sms"
SMS_DRAIN_TASK = "otp.tasks.drain_sms"
SMS_REQUEUE_STALE_TASK = "otp.tasks.requeue_stale_sms"
OTP_SESSIONS_PURGE_TASK = "otp.tasks.purge_old_sessions"
INBOX_PURGE_TASK = "otp.tasks.purge_test_inbox"
# The queue settings.CELERY_TASK_ROUTES gives SMS_DELIVER_TASK and SMS_DRAIN_TASK: SMS sends have workers of
# their own at scale.
SMS_QUEUE = "sms"
# Set (NX, for SMS_DRAIN_NUDGE_MS) by the request that asks for a drain; held by a working drain, which claims
# again within the key's life; deleted by a drain before the last look that lets it end.
SMS_DRAIN_KEY = "zeckta:sms:drain"


def sms_enqueue_on_commit(*, message_id: int, expires_at: datetime) -> None:
    """The request path's only way to publish: never before commit (a worker would find no row), never raises.

    On PostgreSQL with a broker, a nudge to the drainer (`sms_drain_nudge`: at most one task per
    SMS_DRAIN_NUDGE_MS, whatever the request rate); elsewhere (SQLite, tasks run in-process) a task for
    this one SMS."""
    if connection.vendor == "postgresql" and not celery_app.conf.task_always_eager:
        transaction.on_commit(sms_drain_nudge)
    else:
        transaction.on_commit(partial(sms_enqueue, message_id=message_id, expires_at=expires_at))


def sms_drain_nudge() -> None:
    """Asks for a drain, coalesced (zeckta.nudge): the first caller after the drainer's last look publishes a
    drain task; the others within SMS_DRAIN_NUDGE_MS, and every caller while a drain is at work, find the key
    set and do nothing. Never raises."""
    SMS_NUDGE.ask()


def sms_drain_publish(*, countdown: float = 0) -> None:
    """Publishes a drain task now (or in `countdown` seconds); never raises. It carries the context of the
    request that publishes it (zeckta.taskcontext), so one requestId finds a request and the lines of the
    drain it asked for; that drain may send other requests' SMS too (each line names its SMS)."""
    try:
        celery_app.tasks[SMS_DRAIN_TASK].apply_async(countdown=countdown or None, exchange="", routing_key=SMS_QUEUE)
    except Exception:
        logger.warning("could not publish the SMS drain task; the outbox sweeper will retry", exc_info=True)


SMS_NUDGE = DrainNudge(SMS_DRAIN_KEY, what="SMS drain", publish=sms_drain_publish)


def sms_enqueue(*, message_id: int, expires_at: datetime) -> None:
    """Publishes the send task now; never raises. A lost publish is picked up by the outbox sweeper."""
    try:
        # By name: `otp.tasks` imports this module (OtpConfig.ready registers it in every process).
        # `expires`: a task still waiting in the queue when its OTP dies is dropped by the worker.
        # The anonymous exchange with the queue's name as routing key: kombu's Redis transport then pushes
        # straight onto the queue, one round trip, instead of first reading the exchange's bindings.
        celery_app.tasks[SMS_DELIVER_TASK].apply_async(
            args=[message_id], expires=expires_at, exchange="", routing_key=SMS_QUEUE
        )
    except Exception:
        logger.warning(
            "could not publish SMS task for message %s; the outbox sweeper will retry", message_id, exc_info=True
        )


class SmsRetryLater(Exception):
    """Send again later: the gateway failed transiently and attempts remain (backoff with jitter), the
    route is at its rate cap (until the next second), or the SMS moved to the next route (at once)."""

    def __init__(self, countdown: float, *, jitter: bool = True) -> None:
        super().__init__(f"retry in {countdown:.1f}s")
        self.countdown = countdown
        self.jitter = jitter


def _retry_delay(attempts: int) -> float:
    """Exponential backoff in seconds before the next gateway call (jitter is added by the task)."""
    return min(settings.SMS_RETRY_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0), settings.SMS_RETRY_BACKOFF_MAX_SECONDS)


def sms_deliver(*, message_id: int) -> str:
    """Sends one outbox row through its route, at most once at a time; returns the row's new status.

    The row is claimed (`queued` -> `processing`, attempts + 1) by one conditional UPDATE before the
    gateway call, and the outcome is recorded after the call with the attempt's row. A worker killed
    mid-send leaves `processing`: the sweeper re-claims it once the lease ends and sends again with the
    same `reference`, which the gateway uses to drop the duplicate. A permanent error, or transient ones
    past SMS_MAX_SEND_ATTEMPTS on a route, move the SMS to the next route with the same text.

    A send that goes through costs two statements, each its own transaction: the claim, which returns
    the row, and the outcome with its attempt row (plus the receipt lock where receipts can arrive, and
    the otp.sent webhook event in the outcome's transaction when an endpoint of the workspace wants it).
    """
    now = timezone.now()
    stale_claim = now - timedelta(seconds=settings.SMS_PROCESSING_LEASE_SECONDS)
    message = _claim(message_id, now=now, stale_claim=stale_claim)
    if message is None:
        unclaimed = SmsMessage.objects.select_related("session", "workspace").filter(pk=message_id).first()
        if unclaimed is None:
            return "missing"
        if unclaimed.relayed and connection.vendor == "postgresql":
            # A relayed SMS has no session for the claim to join: its own claim, after the read that
            # found it relayed, so that an OTP SMS's path keeps its statements.
            message = _claim_relayed(message_id, now=now, stale_claim=stale_claim)
        if message is None:
            return _settle_unclaimable(unclaimed, now=now, stale_claim=stale_claim)

    send = _send_prepare(message, now=now)
    if isinstance(send, str):
        return send
    started = time.perf_counter()
    try:
        outcome: GatewayResult | GatewayError = _send(send.choice, send.outgoing, gateway=send.gateway)
    except GatewayError as exc:
        outcome = exc
    return _send_settle(send, outcome, started=started)


@dataclass
class _Send:
    """One claimed SMS ready for its gateway call: what the call needs (no database) and what its
    outcome's settling needs."""

    message: SmsMessage
    choice: RouteChoice
    gateway: SmsGateway
    outgoing: OutgoingSms
    attempt: SmsAttempt
    on_route: dict[str, Any]
    claimed_at: datetime


def _send_prepare(message: SmsMessage, *, now: datetime) -> "_Send | str":
    """Everything before the gateway call of a claimed row, in the claimer's database connection: its text,
    its route and the route's rate cap. Returns the row's status when it ends here (text unreadable, every
    route tried); raises SmsRetryLater when the route is at its cap (the claim given back)."""
    if message.encrypted_text is None:
        # Only settling a row wipes its text, and a settled row cannot be claimed: this is a bug, not a retry.
        raise RuntimeError(f"SMS {message.public_id} was claimed without its text")
    try:
        text = decrypt_text(message.encrypted_text)
    except InvalidToken:
        # The encryption key changed since the request: no retry can ever read this text. Without this
        # the row would sit `processing` and be re-claimed once per lease until its attempts ran out.
        _finish(
            _mine(message), message, SmsStatus.FAILED, error="the SMS text cannot be decrypted with the current key"
        )
        logger.error("SMS %s cannot be decrypted (SMS_ENCRYPTION_KEY changed?); not sent", message.public_id)
        return SmsStatus.FAILED

    choice = _route_now(message)
    if choice is None:
        _finish(_mine(message), message, SmsStatus.FAILED, error="every route was tried")
        return SmsStatus.FAILED
    log_context_update(route=choice.name)
    wait = route_rate_wait(choice)
    if wait:
        # Not an attempt: give back what the claim counted, and come back in the next second.
        _mine(message).update(
            status=SmsStatus.QUEUED,
            claimed_at=None,
            attempts=F("attempts") - 1,
            route_attempts=F("route_attempts") - 1,
            next_attempt_at=now + timedelta(seconds=wait),
        )
        raise SmsRetryLater(wait, jitter=False)
    # Written with the outcome, not before the call (one statement less per SMS): the claim already
    # shows the send under way. On a new route (its first send, or the one it was on went away) the
    # route's budget starts with this call.
    on_route: dict[str, Any] = {}
    if message.route_key != choice.key:
        on_route = {"route_key": choice.key, "route_name": choice.name, "route_attempts": 1}
        message.route_key, message.route_name, message.route_attempts = choice.key, choice.name, 1

    attempt = SmsAttempt(
        message_id=message.pk, route=choice.route, route_key=choice.key, route_name=choice.name, started_at=now
    )
    outgoing = OutgoingSms(
        to=message.to,
        src=message.src,
        text=text,
        reference=str(message.public_id),
        receipt_url=choice.receipt_url(),
        retry=message.route_attempts > 1,
        channel=message.channel,
        locale=_locale_of(message),
    )
    # The gateway is built here, not in the call: a route's settings are read from the database.
    return _Send(message, choice, choice.gateway(), outgoing, attempt, on_route, claimed_at=now)


def _send_settle(send: _Send, outcome: "GatewayResult | GatewayError", *, started: float) -> str:
    """Records a gateway call's outcome (started at `started`, perf_counter) in the claimer's connection:
    the attempt row, the SMS's new status, the otp.sent event and the receipt lock. Returns the status;
    raises SmsRetryLater when the SMS is to be sent again (the row is `queued` with its due time)."""
    message, choice, attempt, on_route = send.message, send.choice, send.attempt, send.on_route
    if isinstance(outcome, PermanentGatewayError):
        _sms_counted(choice, "failed", started)
        _attempt_failed(attempt, outcome)
        logger.warning("SMS %s failed permanently on route %s: %s", message.public_id, choice.name, outcome)
        return _fail_over(_mine(message), message, choice, error=str(outcome), on_route=on_route)
    if isinstance(outcome, GatewayError):  # transient
        _attempt_failed(attempt, outcome)
        if message.route_attempts >= settings.SMS_MAX_SEND_ATTEMPTS:
            _sms_counted(choice, "failed", started)
            logger.warning(
                "SMS %s: route %s failed %s times: %s", message.public_id, choice.name, message.route_attempts, outcome
            )
            return _fail_over(
                _mine(message),
                message,
                choice,
                on_route=on_route,
                error=f"gave up after {message.route_attempts} attempts on route {choice.name}: {outcome}",
            )
        _sms_counted(choice, "retried", started)
        delay = _retry_delay(message.route_attempts)
        _mine(message).update(
            status=SmsStatus.QUEUED,
            claimed_at=None,
            last_error=str(outcome)[:500],
            next_attempt_at=timezone.now() + timedelta(seconds=delay),
            updated_at=timezone.now(),
            **on_route,
        )
        logger.info("SMS %s attempt %s failed (%s); retrying", message.public_id, message.attempts, outcome)
        raise SmsRetryLater(delay) from None
    result = outcome
    now = send.claimed_at
    _sent_counted(send, result, started)
    if _settles_with_more(send):
        with transaction.atomic():
            if choice.takes_receipts:
                receipt_lock(route_key=choice.key, provider_message_id=result.provider_message_id)
            # otp.sent commits with the status it reports, and only from the worker that settled the row.
            if _settle_sent(message, attempt, claimed_at=now) and _sent_event(message):
                otp_sms_event_emit(message=message, event_type=Event.OTP_SENT, at=attempt.finished_at or now)
            if choice.takes_receipts:
                # A receipt that beat this commit was kept aside: it applies now.
                early_receipts_apply(route_key=choice.key, provider_message_id=result.provider_message_id)
    else:
        _settle_sent(message, attempt, claimed_at=now)
    _sent_logged(send)
    return SmsStatus.SENT


def _sent_counted(send: _Send, result: GatewayResult, started: float) -> None:
    """An accepted call in the metrics and on its attempt row (not yet written)."""
    _sms_counted(send.choice, "sent", started)
    metrics.SMS_UNITS.labels(country=_country(send.message) or "unknown").inc(send.message.units)
    send.attempt.status = SmsAttempt.Status.ACCEPTED
    send.attempt.provider_message_id = result.provider_message_id[:200]
    send.attempt.provider_status = result.provider_status[:64]


def _sent_event(message: SmsMessage) -> bool:
    # Checked in the process's cache: without a subscriber the settle stays one autocommit statement.
    return not message.relayed and webhook_subscribed(
        workspace_id=message.workspace_id, event_type=Event.OTP_SENT, test=message.is_test
    )


def _settles_with_more(send: _Send) -> bool:
    """Whether an accepted send's settling takes more than its row and attempt: the receipt lock of a route
    that takes receipts, the otp.sent event of a subscribed workspace."""
    return send.choice.takes_receipts or _sent_event(send.message)


def _sent_logged(send: _Send) -> None:
    message = send.message
    logger.info("SMS %s sent through route %s (attempt %s)", message.public_id, send.choice.name, message.attempts)


# The claim. UPDATE ... FROM the session, not Django's `session_id IN (subquery)`: the status, lease and
# attempts are conditions on the updated row itself, which PostgreSQL re-evaluates against the committed
# version when it had to wait for another worker's lock on it, so a row sent meanwhile is never claimed
# again (a double SMS). The session conditions use the statement's snapshot, as a subquery would.
# `live_since`: a sendable SMS and its session are at most a day old (a session's validity, a relayed SMS's
# deadline), and none is newer than now (give or take the clocks, `live_until`), which tells PostgreSQL the
# daily partitions to read (otp.partitions): one or two, not the days ahead.
_CLAIM_SQL = f"""
    UPDATE {SmsMessage._meta.db_table} AS m
       SET status = %(processing)s, claimed_at = %(now)s, attempts = m.attempts + 1,
           route_attempts = m.route_attempts + 1, updated_at = %(now)s
      FROM {OtpSession._meta.db_table} AS s
     WHERE m.id = %(id)s AND s.id = m.session_id AND s.status = %(pending)s AND s.expires_at > %(now)s
       AND m.created_at > %(live_since)s AND m.created_at < %(live_until)s
       AND s.created_at > %(live_since)s AND s.created_at < %(live_until)s
       AND m.route_attempts < %(max_attempts)s
       AND (m.status = %(queued)s OR (m.status = %(processing)s AND m.claimed_at < %(stale_claim)s))
    RETURNING {columns_of(SmsMessage, "m")}, s.country, s.locale
"""


# The claim of a relayed SMS: the same conditions on the row, its own deadline instead of a session's.
_CLAIM_RELAYED_SQL = f"""
    UPDATE {SmsMessage._meta.db_table} AS m
       SET status = %(processing)s, claimed_at = %(now)s, attempts = m.attempts + 1,
           route_attempts = m.route_attempts + 1, updated_at = %(now)s
     WHERE m.id = %(id)s AND m.session_id IS NULL AND m.send_before > %(now)s
       AND m.created_at > %(live_since)s AND m.created_at < %(live_until)s
       AND m.route_attempts < %(max_attempts)s
       AND (m.status = %(queued)s OR (m.status = %(processing)s AND m.claimed_at < %(stale_claim)s))
    RETURNING {columns_of(SmsMessage, "m")}, m.country, NULL
"""


def _claim(message_id: int, *, now: datetime, stale_claim: datetime) -> SmsMessage | None:
    """The claimed row (with `session_country`), or None when it cannot be claimed now."""
    if connection.vendor != "postgresql":
        return _claim_portable(message_id, now=now, stale_claim=stale_claim)
    return _claim_with(_CLAIM_SQL, message_id, now=now, stale_claim=stale_claim)


def _claim_relayed(message_id: int, *, now: datetime, stale_claim: datetime) -> SmsMessage | None:
    return _claim_with(_CLAIM_RELAYED_SQL, message_id, now=now, stale_claim=stale_claim)


def _claim_with(sql: str, message_id: int, *, now: datetime, stale_claim: datetime) -> SmsMessage | None:
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            {
                "id": message_id,
                "now": db_value(SmsMessage, "claimed_at", now),
                "stale_claim": db_value(SmsMessage, "claimed_at", stale_claim),
                "live_since": db_value(SmsMessage, "created_at", now - MAX_VALIDITY),
                "live_until": db_value(SmsMessage, "created_at", now + CLOCK_SKEW),
                "max_attempts": settings.SMS_MAX_SEND_ATTEMPTS,
                "queued": SmsStatus.QUEUED,
                "processing": SmsStatus.PROCESSING,
                "pending": SessionStatus.PENDING,
            },
        )
        row = cursor.fetchone()
    if row is None:
        return None
    message = instance_from_row(SmsMessage, row[:-2])
    message.session_country, message.session_locale = row[-2:]  # type: ignore[attr-defined]
    return message


def _claim_portable(message_id: int, *, now: datetime, stale_claim: datetime) -> SmsMessage | None:
    """The same claim through the ORM, then a read: for SQLite (make run), whose RETURNING cannot name the
    session. SQLite runs one writer at a time, so the subquery's snapshot question does not arise."""
    live_sessions = OtpSession.objects.filter(status=SessionStatus.PENDING, expires_at__gt=now).values("pk")
    claimed = (
        SmsMessage.objects.filter(pk=message_id, route_attempts__lt=settings.SMS_MAX_SEND_ATTEMPTS)
        .filter(Q(status=SmsStatus.QUEUED) | Q(status=SmsStatus.PROCESSING, claimed_at__lt=stale_claim))
        .filter(Q(session_id__in=live_sessions) | Q(session__isnull=True, send_before__gt=now))
        .update(
            status=SmsStatus.PROCESSING,
            claimed_at=now,
            attempts=F("attempts") + 1,
            route_attempts=F("route_attempts") + 1,
            updated_at=now,
        )
    )
    return SmsMessage.objects.select_related("session").get(pk=message_id) if claimed else None


def _mine(message: SmsMessage) -> QuerySet[SmsMessage]:
    """The row while this worker's claim on it holds: updates through it change nothing once it is gone."""
    return SmsMessage.objects.filter(
        pk=message.pk, created_at=message.created_at, status=SmsStatus.PROCESSING, claimed_at=message.claimed_at
    )


def _settle_sent(message: SmsMessage, attempt: SmsAttempt, *, claimed_at: datetime) -> bool:
    """Marks the claimed row sent and writes its attempt: on PostgreSQL in one statement (its own
    transaction unless the caller holds one). The row's update is conditional on the claim, the attempt
    row is not: if another worker settled the row first, the call this worker made is still on record.
    Returns whether this call settled the row."""
    done = timezone.now()
    attempt.finished_at = done
    sent = {
        "status": SmsStatus.SENT,
        "provider_message_id": attempt.provider_message_id,
        "encrypted_text": None,
        "last_error": "",
        "finished_at": done,
        "updated_at": done,
        "route_name": attempt.route_name,
        "route_key": attempt.route_key,
    }
    if connection.vendor != "postgresql":  # SQLite (make run): no UPDATE inside a WITH
        with transaction.atomic():
            settled = _mine(message).update(**sent)
            attempt.save(force_insert=True)
        return bool(settled)
    return _settle_sent_many([(message, attempt, claimed_at)]) == 1


# Accepted sends settled at once (PostgreSQL; _settle_sent's one row, or a drain's wave): each row marked sent
# if this worker's claim on it still holds, and each call's attempt written either way. The creation-time
# bounds are constants of the statement, so PostgreSQL reads only the days the rows are in (otp.partitions).
_SETTLE_SENT_MANY_SQL = """
    WITH v (id, created_at, claimed_at, provider_message_id, route_id, route_key, route_name, provider_status,
            started_at) AS (VALUES {rows}),
    sent AS (
        UPDATE {message_table} AS m
           SET status = %s, provider_message_id = v.provider_message_id, encrypted_text = NULL, last_error = '',
               finished_at = %s, updated_at = %s, route_name = v.route_name, route_key = v.route_key
          FROM v
         WHERE m.id = v.id AND m.created_at = v.created_at AND m.status = %s AND m.claimed_at = v.claimed_at
           AND m.created_at >= %s AND m.created_at <= %s
        RETURNING m.id
    )
    INSERT INTO {attempt_table} (message_id, route_id, route_key, route_name, status, provider_message_id,
                                 provider_status, error_code, error, started_at, finished_at)
    SELECT v.id, v.route_id, v.route_key, v.route_name, %s, v.provider_message_id, v.provider_status, '', '',
           v.started_at, %s
      FROM v
    RETURNING (SELECT count(*) FROM sent)
"""
# One row of v: id, created_at, claimed_at, provider_message_id, route_id, route_key, route_name,
# provider_status, started_at.
_SETTLE_SENT_ROW = (
    "(%s::bigint, %s::timestamptz, %s::timestamptz, %s::text, %s::bigint, %s::text, %s::text, %s::text,"
    " %s::timestamptz)"
)


def _settle_sent_many(sends: list[tuple[SmsMessage, SmsAttempt, datetime]]) -> int:
    """Marks claimed rows sent and writes their attempts in one statement (its own transaction unless the
    caller holds one), each (row, its attempt, the time of this worker's claim). PostgreSQL. Returns how many
    rows this call settled (a row another worker settled first keeps its state)."""
    done = timezone.now()
    params: list[Any] = []
    for message, attempt, claimed_at in sends:
        attempt.finished_at = done
        params += [
            message.pk,
            message.created_at,
            claimed_at,
            attempt.provider_message_id,
            attempt.route_id,
            attempt.route_key,
            attempt.route_name,
            attempt.provider_status,
            attempt.started_at,
        ]
    created = [message.created_at for message, _, _ in sends]
    sql = _SETTLE_SENT_MANY_SQL.format(
        rows=", ".join([_SETTLE_SENT_ROW] * len(sends)),
        message_table=SmsMessage._meta.db_table,
        attempt_table=SmsAttempt._meta.db_table,
    )
    params += [SmsStatus.SENT, done, done, SmsStatus.PROCESSING, min(created), max(created)]
    params += [SmsAttempt.Status.ACCEPTED, done]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return rows[0][0] if rows else 0


def _sms_counted(choice: RouteChoice, status: str, started: float) -> None:
    """One provider call's outcome and time, in the metrics (zeckta_sms_total, zeckta_sms_send_seconds)."""
    metrics.SMS_SEND_SECONDS.labels(route=choice.name).observe(time.perf_counter() - started)
    metrics.SMS.labels(route=choice.name, status=status).inc()


def _route_now(message: SmsMessage) -> RouteChoice | None:
    """The route this send takes: the one the SMS is on, or the first it has not given up on."""
    tried = set(message.routes_tried)
    candidates = [choice for choice in routes_for(_country(message), message.channel) if choice.key not in tried]
    current = next((choice for choice in candidates if choice.key == message.route_key), None)
    return current or (candidates[0] if candidates else None)


def _locale_of(message: SmsMessage) -> str:
    """The language of the session the send belongs to (API.md section 15): returned by the claims, else
    read from the session the portable claim loaded with the row. A relayed SMS has none."""
    locale = getattr(message, "session_locale", None)
    if locale is None and SmsMessage.session.is_cached(message) and message.session is not None:
        locale = message.session.locale
    return locale or DEFAULT_LOCALE


def _country(message: SmsMessage) -> str:
    """The destination's country: returned by the claim, else read from the session (a relayed SMS's own)."""
    if hasattr(message, "session_country"):
        return message.session_country
    return message.session.country if message.session is not None else message.country


def _attempt_failed(attempt: SmsAttempt, exc: GatewayError) -> None:
    attempt.status, attempt.error, attempt.error_code = SmsAttempt.Status.FAILED, str(exc)[:500], exc.error_code[:64]
    attempt.provider_status, attempt.finished_at = exc.provider_status[:64], timezone.now()
    attempt.save(force_insert=True)


def _send(choice: RouteChoice, outgoing: OutgoingSms, *, gateway: SmsGateway) -> GatewayResult:
    """The gateway call. The task's soft time limit (settings.CELERY_TASK_ANNOTATIONS) striking during it is
    a time-out like any other: the provider may have the SMS, so it is retried with the same reference at
    once, rather than left claimed until the lease is over."""
    try:
        return gateway.send(outgoing)
    except SoftTimeLimitExceeded:
        raise TransientGatewayError("the send ran out of time (the task's soft time limit)") from None


def _fail_over(
    mine: QuerySet[SmsMessage], message: SmsMessage, choice: RouteChoice, *, error: str, on_route: dict[str, Any]
) -> str:
    """Moves the SMS to the next route it has not tried, at once and with the same text; FAILED (and a
    refund) when none is left."""
    tried = [*message.routes_tried, choice.key]
    remaining = [route for route in routes_for(_country(message), message.channel) if route.key not in tried]
    if not remaining:
        if on_route:
            mine.update(**on_route)  # the route it failed on, as the SMS's last
        _finish(mine, message, SmsStatus.FAILED, error=error)
        return SmsStatus.FAILED
    now = timezone.now()
    mine.update(
        status=SmsStatus.QUEUED,
        claimed_at=None,
        routes_tried=tried,
        route_key=remaining[0].key,
        route_name=remaining[0].name,
        route_attempts=0,
        last_error=error[:500],
        next_attempt_at=now,
        updated_at=now,
    )
    logger.info("SMS %s moves from route %s to %s", message.public_id, choice.name, remaining[0].name)
    raise SmsRetryLater(0, jitter=False)


def _settle_unclaimable(message: SmsMessage, *, now: datetime, stale_claim: datetime) -> str:
    """Why a row could not be claimed; ends rows that can never be sent (dead OTP, no attempts left)."""
    claimable_state = message.status == SmsStatus.QUEUED or (
        message.status == SmsStatus.PROCESSING and message.claimed_at is not None and message.claimed_at < stale_claim
    )
    if not claimable_state:
        return message.status  # done already, or another worker holds a live claim
    row = SmsMessage.objects.filter(
        pk=message.pk, created_at=message.created_at, status=message.status, claimed_at=message.claimed_at
    )
    session = message.session
    if session is None:
        assert message.send_before is not None  # otp_smsmessage_session_or_relayed
        if message.send_before <= now:
            _finish(row, message, SmsStatus.EXPIRED, error="the relayed SMS was not sent in time; nothing was sent")
            return SmsStatus.EXPIRED
    elif session.status == SessionStatus.APPROVED:
        # The user typed the code, so an earlier attempt delivered it (a gateway time-out that had in fact
        # gone through): it was sent and is charged; a refund here would give the SMS away.
        _finish(row, message, SmsStatus.SENT, error="")
        return SmsStatus.SENT
    elif session.status != SessionStatus.PENDING or session.expires_at <= now:
        _finish(row, message, SmsStatus.EXPIRED, error="the OTP was no longer valid; nothing was sent")
        return SmsStatus.EXPIRED
    if message.route_attempts >= settings.SMS_MAX_SEND_ATTEMPTS:
        _finish(row, message, SmsStatus.FAILED, error=f"gave up after {message.attempts} attempts")
        return SmsStatus.FAILED
    # Claimable after all: another worker's claim ended (a retry put it back in the queue) between our
    # UPDATE and this read. Its own retry sends it; failing it here would drop a good message. Logged: a row
    # that keeps coming back here is one no claim can take, left to the sweeper.
    logger.info("SMS %s was due but not claimed (%s); left to the next claim", message.public_id, message.status)
    return message.status


def _finish(row: QuerySet[SmsMessage], message: SmsMessage, status: str, *, error: str) -> None:
    """Ends delivery: wipes the encrypted text and refunds a prepaid workspace for an SMS never sent; a
    failure for good is an otp.delivery_failed event."""
    now = timezone.now()
    with transaction.atomic():
        if not row.update(status=status, encrypted_text=None, last_error=error[:500], finished_at=now, updated_at=now):
            return  # someone else settled it first
        event_type = otp_sms_event_type(status)
        if event_type is not None:
            otp_sms_event_emit(message=message, event_type=event_type, at=now)
        if status == SmsStatus.FAILED and message.session_id is not None:
            fallback_now(session_id=message.session_id, message_id=message.pk, now=now)  # the next channel
        workspace = message.workspace
        if workspace.is_prepaid and status in (SmsStatus.FAILED, SmsStatus.EXPIRED):
            balance_credit(
                workspace=workspace,
                units=message.units,
                reason=LedgerEntry.Reason.REFUND,
                actor="delivery",
                reference=str(message.public_id),
            )


def sms_supersede(*, session_id: int, now: datetime) -> None:
    """A resend replaced the session's code: its older SMS still waiting to go out (queued, in a retry's
    backoff, or claimed by a worker that died) would carry a dead code, so they end `expired` with nothing
    sent, refunded when prepaid. One being sent at this moment still goes out; its code no longer works."""
    stale_claim = now - timedelta(seconds=settings.SMS_PROCESSING_LEASE_SECONDS)
    waiting = (
        SmsMessage.objects.filter(session_id=session_id)
        .filter(Q(status=SmsStatus.QUEUED) | Q(status=SmsStatus.PROCESSING, claimed_at__lt=stale_claim))
        .select_related("workspace")
    )
    for message in waiting:
        row = SmsMessage.objects.filter(
            pk=message.pk, created_at=message.created_at, status=message.status, claimed_at=message.claimed_at
        )
        _finish(row, message, SmsStatus.EXPIRED, error="replaced by a resend before it went out")


def sms_requeue_stale(*, limit: int = 500) -> int:
    """Publishes a drain when outbox rows wait that no task will take (broker or Redis down at request
    time, a lost publish, a lost retry) or whose worker died mid-send; returns how many there are (up to
    `limit`)."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.SMS_STALE_AFTER_SECONDS)
    lease_over = now - timedelta(seconds=settings.SMS_PROCESSING_LEASE_SECONDS)
    rows = list(
        SmsMessage.objects.filter(
            Q(status=SmsStatus.QUEUED, next_attempt_at__lt=stale)
            | Q(status=SmsStatus.PROCESSING, claimed_at__lt=lease_over)
        )
        # Nothing older is sendable (MAX_VALIDITY); two days leave a day of beat outage: PostgreSQL reads the
        # newest few daily partitions' outbox index, not all of them (otp.partitions).
        .filter(created_at__gt=now - 2 * MAX_VALIDITY, created_at__lt=now + CLOCK_SKEW)
        .order_by("next_attempt_at")
        .values_list("pk", "session__expires_at", "send_before")[:limit]
    )
    if not rows:
        return 0
    # Not stale again until another stale period passes, so one outage is reported once per period. Still
    # due: the drain takes them at once.
    SmsMessage.objects.filter(pk__in=[pk for pk, _, _ in rows], status=SmsStatus.QUEUED).update(next_attempt_at=now)
    if connection.vendor == "postgresql" and not celery_app.conf.task_always_eager:
        sms_drain_publish()
    else:
        for pk, session_expires_at, send_before in rows:
            expires_at = session_expires_at or send_before or now  # a relayed SMS has its own deadline
            sms_enqueue(message_id=pk, expires_at=max(expires_at, now + timedelta(seconds=30)))
    return len(rows)


# --- The drain: many SMS per task, their gateway calls in flight together ------------------------------


@dataclass
class SmsDrainResult:
    sent: int = 0  # gateway calls that went through
    settled: int = 0  # rows that ended or were scheduled again, sent included
    claims: int = 0  # claim statements


def sms_drain(*, seconds: float | None = None) -> SmsDrainResult:
    """Sends every due outbox row: claims up to SMS_SEND_CONCURRENCY rows in one statement, hands their
    gateway calls to the process's thread pool, and settles the outcomes as they arrive, a wave at a time,
    in this task's own database connection (the pool's threads make HTTP calls only: a worker process holds
    one connection however many calls are in flight). Claims again while calls are in flight, every
    SMS_DRAIN_POLL_MS at most; returns when no due row is left and no call is in flight, or once it has
    claimed for SMS_DRAIN_SECONDS (at most a third of the task's soft time limit; `seconds` overrides),
    publishing a follow-up drain so that a backlog goes on in a fresh task.

    While it works, each claim holds the nudge key (`sms_drain_nudge`): requests committing meanwhile
    publish nothing, since a claim will follow their commit. Before it ends it deletes the key and looks
    once more.

    The guarantees of `sms_deliver` hold row by row: the claim is the same conditional UPDATE (batched,
    FOR UPDATE SKIP LOCKED so two drainers never wait on each other), a row claimed by a worker that
    dies stays `processing` until its lease ends and is claimed again with the same `reference`, and a
    retry waits in the row (`next_attempt_at`): the drain that finds it due sends it, and a drain ending
    before then publishes drains for the moments its put-off rows fall due (`_retries_publish`).
    """
    result = SmsDrainResult()
    capacity = max(settings.SMS_SEND_CONCURRENCY, 1)
    poll = settings.SMS_DRAIN_POLL_MS / 1000
    if seconds is None:
        # Claims stop well inside the task's soft time limit: the calls then in flight must still end.
        seconds = min(settings.SMS_DRAIN_SECONDS, settings.SMS_TASK_SOFT_TIME_LIMIT_SECONDS / 3)
    stop_at = time.monotonic() + seconds
    pool = _send_pool()
    in_flight: dict[Future[GatewayResult], tuple[_Send, float]] = {}
    retries: list[float] = []  # monotonic times at which the rows this drain put off fall due
    last_claim = -1.0
    picked_any = True  # whether the last claim filled its room: claim again at once while it does
    released = False  # whether this drain let go of the nudge key: its next claim is its last if it finds nothing

    def retry_later(retry: SmsRetryLater) -> None:
        retries.append(time.monotonic() + retry.countdown)

    def settle(wave: list[tuple[_Send, GatewayResult | GatewayError, float]]) -> None:
        for status in _send_settle_wave(wave):
            if isinstance(status, SmsRetryLater):
                retry_later(status)
            elif status == SmsStatus.SENT:
                result.sent += 1
            result.settled += 1

    while True:
        moment = time.monotonic()
        room = capacity - len(in_flight)
        if room > 0 and moment < stop_at and (picked_any or moment - last_claim >= poll):
            last_claim = moment
            claimed, unclaimed = _claim_due(room, hold=not released)
            result.claims += 1
            picked_any = len(claimed) + len(unclaimed) >= room
            for message in claimed:
                try:
                    assert message.claimed_at is not None  # the claim's time, set by the claim
                    send = _send_prepare(message, now=message.claimed_at)
                except SmsRetryLater as retry:
                    retry_later(retry)
                    continue
                except Exception:
                    # As it would have ended a one-SMS task: the row stays claimed until its lease ends; one
                    # bad row does not stop the batch.
                    logger.exception("SMS %s could not be prepared for sending", message.public_id)
                    continue
                if isinstance(send, str):
                    result.settled += 1
                    continue
                in_flight[pool.submit(send.gateway.send, send.outgoing)] = (send, time.perf_counter())
            result.settled += _settle_unclaimable_rows(unclaimed)
            if not claimed and not unclaimed and not in_flight:
                if released:
                    break  # nothing due, nothing in flight, and from now on a request publishes for itself
                # A request that found the key held committed before this delete: the next claim sees its row.
                SMS_NUDGE.release()
                released, picked_any = True, True
                continue
            released = False
        elif not in_flight:
            if moment >= stop_at:
                # A request may have committed after the last claim, finding the key held: a fresh task
                # goes on with it and with any backlog.
                SMS_NUDGE.release()
                sms_drain_publish()
                break
            time.sleep(max(poll - (moment - last_claim), 0.001))
            continue
        if not in_flight:
            continue
        try:
            done, _ = wait(in_flight, timeout=poll, return_when=FIRST_COMPLETED)
            if done and len(done) < len(in_flight):
                # The calls of one claim end close together: gathering them a moment longer settles them in
                # one statement instead of one each.
                more, _ = wait(in_flight.keys() - done, timeout=SMS_SETTLE_GATHER_SECONDS, return_when=ALL_COMPLETED)
                done |= more
        except SoftTimeLimitExceeded:
            # A call hung past the task's soft time limit: every call still in flight is a time-out like any
            # other (the provider may have the SMS), sent again with the same reference, as `_send` does.
            settle(
                [
                    (send, TransientGatewayError("the send ran out of time (the task's soft time limit)"), started)
                    for send, started in in_flight.values()
                ]
            )
            in_flight.clear()
            SMS_NUDGE.release()
            sms_drain_publish()
            break
        wave: list[tuple[_Send, GatewayResult | GatewayError, float]] = []
        for future in done:
            send, started = in_flight.pop(future)
            try:
                outcome: GatewayResult | GatewayError = future.result()
            except GatewayError as exc:
                outcome = exc
            except Exception:
                # A bug in a gateway, as it would have ended a one-SMS task: the row stays claimed until its
                # lease ends, then is sent again; the others go on.
                logger.exception("SMS %s: the gateway call raised", send.message.public_id)
                continue
            wave.append((send, outcome, started))
        settle(wave)
    _retries_publish([due for due in retries if due > last_claim])
    return result


# How long a drain waits for more of its calls to end once one has, so that their outcomes settle together.
SMS_SETTLE_GATHER_SECONDS = 0.005
# The rows a drain put off are sent by drains published for their due times, one for the rows due within this
# many seconds of each other: none of them waits longer than this past its time.
SMS_RETRY_GATHER_SECONDS = 0.25


def _retries_publish(dues: list[float]) -> None:
    """Publishes the drains of the rows a drain put off, due at `dues` (monotonic times after its last claim,
    which found no row due; one due earlier was taken by that claim or an earlier one): a drain for each run
    of them within SMS_RETRY_GATHER_SECONDS, just past the run's last.

    Not one drain for the earliest alone, as it first was: that drain found the later rows not yet due and
    ended, and they waited for the sweeper (SMS_STALE_AFTER_SECONDS); the scale-out test caught a retry due
    0.2 s after another's left queued that way."""
    runs: list[list[float]] = []  # [first due, last due] of each run
    for due in sorted(dues):
        if runs and due - runs[-1][0] <= SMS_RETRY_GATHER_SECONDS:
            runs[-1][1] = due
        else:
            runs.append([due, due])
    now = time.monotonic()
    for _, last in runs:
        sms_drain_publish(countdown=max(last - now, 0) + 0.01)


def _send_settle_wave(wave: list[tuple[_Send, "GatewayResult | GatewayError", float]]) -> "list[str | SmsRetryLater]":
    """Settles the outcomes of calls that ended together: the plain sends (accepted, on a route without
    receipts, no otp.sent subscriber) in one statement, every other outcome as `sms_deliver` settles it.
    Returns each outcome's new status, or the SmsRetryLater that puts it off."""
    statuses: list[str | SmsRetryLater] = []
    plain: list[tuple[_Send, GatewayResult, float]] = []
    for send, outcome, started in wave:
        if isinstance(outcome, GatewayResult) and connection.vendor == "postgresql" and not _settles_with_more(send):
            plain.append((send, outcome, started))
            continue
        try:
            statuses.append(_send_settle(send, outcome, started=started))
        except SmsRetryLater as retry:
            statuses.append(retry)
    if plain:
        for send, outcome, started in plain:
            _sent_counted(send, outcome, started)
        _settle_sent_many([(send.message, send.attempt, send.claimed_at) for send, _, _ in plain])
        for send, _, _ in plain:
            _sent_logged(send)
            statuses.append(SmsStatus.SENT)
    return statuses


# The batch claim: the due rows (queued and due, or claimed by a worker whose lease is over), locked by this
# statement alone (SKIP LOCKED: a row another drainer or sms_deliver holds is left to it), then claimed by the
# conditions of _CLAIM_SQL and _CLAIM_RELAYED_SQL. A picked row that cannot be claimed (its OTP is dead, its
# attempts are spent) comes back without its columns, for _settle_unclaimable.
_CLAIM_DUE_SQL = f"""
    WITH picked AS (
        SELECT id, session_id, created_at FROM {SmsMessage._meta.db_table}
         WHERE created_at > %(live_since)s AND created_at < %(live_until)s
           AND ((status = %(queued)s AND next_attempt_at <= %(now)s)
                OR (status = %(processing)s AND claimed_at < %(stale_claim)s))
         ORDER BY next_attempt_at
         LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE {SmsMessage._meta.db_table} AS m
           SET status = %(processing)s, claimed_at = %(now)s, attempts = m.attempts + 1,
               route_attempts = m.route_attempts + 1, updated_at = %(now)s
          FROM picked LEFT JOIN {OtpSession._meta.db_table} AS s
               ON s.id = picked.session_id AND s.created_at > %(live_since)s AND s.created_at < %(live_until)s
         WHERE m.id = picked.id AND m.created_at = picked.created_at AND m.route_attempts < %(max_attempts)s
           -- Known when planning, unlike picked.created_at: the plan (and its locks) covers the live days only.
           AND m.created_at > %(live_since)s AND m.created_at < %(live_until)s
           AND (m.status = %(queued)s OR (m.status = %(processing)s AND m.claimed_at < %(stale_claim)s))
           AND ((s.status = %(pending)s AND s.expires_at > %(now)s)
                OR (m.session_id IS NULL AND m.send_before > %(now)s))
        RETURNING {columns_of(SmsMessage, "m")},
                  CASE WHEN m.session_id IS NULL THEN m.country ELSE s.country END AS session_country,
                  s.locale AS session_locale
    )
    SELECT picked.id, claimed.* FROM picked LEFT JOIN claimed ON claimed.id = picked.id
"""


def _claim_due(limit: int, *, hold: bool = True) -> tuple[list[SmsMessage], list[int]]:
    """Claims up to `limit` due rows: the claimed rows (with `session_country`) and the ids of rows that
    were due but cannot be claimed. Holds the drain's nudge key first (`hold`): a request that commits
    after this claim's snapshot finds it set and leaves its row to this drain's next claim."""
    if hold:
        SMS_NUDGE.hold()
    now = timezone.now()
    stale_claim = now - timedelta(seconds=settings.SMS_PROCESSING_LEASE_SECONDS)
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_DUE_SQL,
            {
                "limit": limit,
                "now": now,
                "stale_claim": stale_claim,
                "live_since": now - MAX_VALIDITY,
                "live_until": now + CLOCK_SKEW,
                "max_attempts": settings.SMS_MAX_SEND_ATTEMPTS,
                "queued": SmsStatus.QUEUED,
                "processing": SmsStatus.PROCESSING,
                "pending": SessionStatus.PENDING,
            },
        )
        rows = cursor.fetchall()
    claimed, unclaimed = [], []
    for row in rows:
        if row[1] is None:
            unclaimed.append(row[0])
            continue
        message = instance_from_row(SmsMessage, row[1:-2])
        message.session_country, message.session_locale = row[-2:]  # type: ignore[attr-defined]
        claimed.append(message)
    return claimed, unclaimed


def _settle_unclaimable_rows(message_ids: list[int]) -> int:
    if not message_ids:
        return 0
    now = timezone.now()
    stale_claim = now - timedelta(seconds=settings.SMS_PROCESSING_LEASE_SECONDS)
    for message in SmsMessage.objects.select_related("session", "workspace").filter(pk__in=message_ids):
        _settle_unclaimable(message, now=now, stale_claim=stale_claim)
    return len(message_ids)


_pool_lock = threading.Lock()
_pool: tuple[tuple[int, int], ThreadPoolExecutor] | None = None


def _send_pool() -> ThreadPoolExecutor:
    """The process's threads for gateway calls (SMS_SEND_CONCURRENCY of them, started as needed). Built
    in the process that uses it: a prefork child after its fork, never inherited from the parent; built
    again when the setting changed (the tests)."""
    global _pool
    owner = (os.getpid(), settings.SMS_SEND_CONCURRENCY)
    with _pool_lock:
        if _pool is None or _pool[0] != owner:
            if _pool is not None and _pool[0][0] == owner[0]:
                _pool[1].shutdown(wait=False)  # its threads end once idle; calls they hold still finish
            _pool = (owner, ThreadPoolExecutor(owner[1], thread_name_prefix="sms-send"))
        return _pool[1]

"""Writes for OTP sessions: request, verify, and delivering the SMS from the outbox."""

import hashlib
import logging
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from otp import templating
from otp.crypto import code_digest, code_matches, decrypt_text, encrypt_text, generate_code
from otp.destinations import DestinationRefused, destination_check
from otp.errors import DestinationRateLimited, OtpSessionNotFound
from otp.models import OtpSession, SmsMessage
from senders.gateways import OutgoingSms, PermanentGatewayError, TransientGatewayError, get_gateway
from senders.selectors import sender_get_approved
from workspaces.billing import balance_credit, balance_debit
from workspaces.models import LedgerEntry, Workspace
from zeckta.api.errors import ValidationFailed

logger = logging.getLogger(__name__)

COUNTRY_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class OtpRequestResult:
    session: OtpSession
    reused: bool


def otp_request(
    *, workspace: Workspace, dest: str, src: str, purpose: str, message_template: str | None = None
) -> OtpRequestResult:
    """Issues a code and queues its SMS, or answers with the still-valid session (reuse).

    Everything is written in one transaction: the session, its outbox row and the prepaid debit.
    The SMS task is enqueued only after commit; if the broker is down the outbox row waits for the sweeper.
    """
    try:
        country = destination_check(workspace=workspace, dest=dest)
    except DestinationRefused as exc:
        raise ValidationFailed.for_field("dest", str(exc)) from None
    sender = sender_get_approved(workspace=workspace, sender=src)
    if sender is None:
        raise ValidationFailed.for_field("src", "Not an approved sender name of this workspace.")
    template = message_template or workspace.default_message_template or templating.default_template(purpose)

    try:
        return _request_in_transaction(
            workspace=workspace, sender=sender, dest=dest, country=country, purpose=purpose, template=template
        )
    except IntegrityError:
        # Only where no advisory lock serialises requests (SQLite): a concurrent identical request
        # created the pending session first. Run again: it is now reused (or replaced).
        return _request_in_transaction(
            workspace=workspace, sender=sender, dest=dest, country=country, purpose=purpose, template=template
        )


@transaction.atomic
def _request_in_transaction(
    *, workspace: Workspace, sender, dest: str, country: str, purpose: str, template: str
) -> OtpRequestResult:
    now = timezone.now()
    _lock_destination(workspace_id=workspace.pk, dest=dest)
    pending = (
        OtpSession.objects.select_for_update()
        .filter(workspace=workspace, dest=dest, purpose=purpose, status=OtpSession.Status.PENDING)
        .first()
    )
    if pending is not None:
        if workspace.otp_reuse_enabled and pending.expires_at > now:
            return OtpRequestResult(session=pending, reused=True)
        # Expired, or replaced because reuse is off: it can never be approved from now on.
        OtpSession.objects.filter(pk=pending.pk, status=OtpSession.Status.PENDING).update(
            status=OtpSession.Status.EXPIRED
        )

    _check_send_limits(workspace=workspace, dest=dest, country=country, now=now)

    session_id = uuid.uuid4()
    code = generate_code(workspace.otp_code_length)
    text = templating.render(template, code=code, validity_seconds=workspace.otp_validity_seconds)
    segments = templating.count_segments(text)
    session = OtpSession.objects.create(
        public_id=session_id,
        workspace=workspace,
        sender=sender,
        dest=dest,
        country=country,
        src=sender.sender,
        purpose=purpose,
        code_digest=code_digest(session_id, code),
        max_attempts=workspace.otp_max_attempts,
        created_at=now,
        expires_at=now + timedelta(seconds=workspace.otp_validity_seconds),
    )
    message = SmsMessage(
        session=session,
        workspace=workspace,
        to=dest,
        sender=sender.sender,
        encrypted_text=encrypt_text(text),
        encoding=segments.encoding,
        segments=segments.segments,
        units=segments.segments,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    if workspace.is_prepaid:
        # Raises InsufficientBalance (402): the atomic block rolls back, nothing is sent.
        balance_debit(workspace=workspace, units=message.units, reference=str(message.public_id))
    message.save()
    transaction.on_commit(partial(sms_enqueue, message_id=message.pk, expires_at=session.expires_at))
    return OtpRequestResult(session=session, reused=False)


def _lock_destination(*, workspace_id: int, dest: str) -> None:
    """Serialises requests to one destination of one workspace until the transaction ends.

    Without it, two identical requests could both find no pending session and both send; and the
    per-destination count could be passed by requests for different purposes racing each other.
    """
    if connection.vendor != "postgresql":
        return  # SQLite serialises writers itself; the partial unique index catches the rest
    digest = hashlib.blake2b(f"otp-dest:{workspace_id}:{dest}".encode(), digest_size=8).digest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest, "big", signed=True)])


def _check_send_limits(*, workspace: Workspace, dest: str, country: str, now: datetime) -> None:
    sessions = OtpSession.objects.filter(workspace=workspace)
    window = timedelta(seconds=workspace.destination_window_seconds)
    wait = _window_full_for(sessions.filter(dest=dest), limit=workspace.destination_limit, window=window, now=now)
    if wait is not None:
        raise DestinationRateLimited(retry_after_seconds=wait)
    if workspace.country_hourly_limit and country:
        wait = _window_full_for(
            sessions.filter(country=country), limit=workspace.country_hourly_limit, window=COUNTRY_WINDOW, now=now
        )
        if wait is not None:
            raise DestinationRateLimited(
                f"Too many OTP SMS to {country} in the last hour. Retry later.", retry_after_seconds=wait
            )


def _window_full_for(sessions, *, limit: int, window: timedelta, now: datetime) -> int | None:
    """Seconds until `sessions` created within `window` drop below `limit`; None while below it.

    Reads only the newest `limit` creation times (one indexed query): the window reopens when the
    oldest of them leaves it.
    """
    newest_first = sessions.filter(created_at__gt=now - window).order_by("-created_at")
    recent = list(newest_first.values_list("created_at", flat=True)[:limit])
    if len(recent) < limit:
        return None
    return math.ceil((recent[-1] + window - now).total_seconds())


def sms_enqueue(*, message_id: int, expires_at: datetime) -> None:
    """Publishes the send task; never raises. A lost publish is picked up by the outbox sweeper."""
    from otp.tasks import send_sms

    try:
        # `expires`: a task still waiting in the queue when its OTP dies is dropped by the worker.
        send_sms.apply_async(args=[message_id], expires=expires_at)
    except Exception:
        logger.warning("could not publish SMS task for message %s; the outbox sweeper will retry", message_id,
                       exc_info=True)


# --- Verify ------------------------------------------------------------------------------------


class VerifyStatus:
    APPROVED = "APPROVED"
    INVALID = "INVALID"
    EXPIRED = "EXPIRED"
    MAX_ATTEMPTS_REACHED = "MAX_ATTEMPTS_REACHED"
    ALREADY_USED = "ALREADY_USED"


@dataclass(frozen=True)
class VerifyResult:
    status: str
    session: OtpSession

    @property
    def verified(self) -> bool:
        return self.status == VerifyStatus.APPROVED


@transaction.atomic
def otp_verify(*, workspace: Workspace, session_id: uuid.UUID, code: str) -> VerifyResult:
    """Checks a code as one atomic state change under a row lock.

    Concurrent calls queue on the lock and each sees the previous one's outcome, so attempts can never
    exceed the limit and a session is approved at most once.
    """
    now = timezone.now()
    session = OtpSession.objects.select_for_update().filter(workspace=workspace, public_id=session_id).first()
    if session is None:
        raise OtpSessionNotFound()
    Status = OtpSession.Status
    if session.status == Status.APPROVED:
        return VerifyResult(VerifyStatus.ALREADY_USED, session)
    if session.status == Status.MAX_ATTEMPTS_REACHED:
        return VerifyResult(VerifyStatus.MAX_ATTEMPTS_REACHED, session)
    if session.status == Status.EXPIRED:
        return VerifyResult(VerifyStatus.EXPIRED, session)
    if session.expires_at <= now:
        session.status = Status.EXPIRED
        session.save(update_fields=["status"])
        return VerifyResult(VerifyStatus.EXPIRED, session)

    if code_matches(session.public_id, code, session.code_digest):
        session.status, session.verified_at = Status.APPROVED, now
        session.save(update_fields=["status", "verified_at"])
        return VerifyResult(VerifyStatus.APPROVED, session)

    session.attempts_used += 1
    if session.attempts_used >= session.max_attempts:
        session.status = Status.MAX_ATTEMPTS_REACHED
    session.save(update_fields=["attempts_used", "status"])
    locked = session.status == Status.MAX_ATTEMPTS_REACHED
    return VerifyResult(VerifyStatus.MAX_ATTEMPTS_REACHED if locked else VerifyStatus.INVALID, session)


# --- Delivery ----------------------------------------------------------------------------------


class SmsRetryLater(Exception):
    """The gateway failed transiently and attempts remain: the task retries with backoff."""

    def __init__(self, countdown: float) -> None:
        super().__init__(f"retry in {countdown:.1f}s")
        self.countdown = countdown


def _retry_delay(attempts: int) -> float:
    """Exponential backoff in seconds before the next gateway call (jitter is added by the task)."""
    return min(settings.SMS_RETRY_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0), settings.SMS_RETRY_BACKOFF_MAX_SECONDS)


def sms_deliver(*, message_id: int) -> str:
    """Sends one outbox row through the gateway, at most once at a time; returns the row's new status.

    The row is claimed (`queued` -> `processing`, attempts + 1) by one conditional UPDATE before the
    gateway call, and the outcome is recorded after it. A worker killed mid-send leaves `processing`:
    the sweeper re-claims it once the lease ends and sends again with the same `reference`, which the
    gateway uses to drop the duplicate.
    """
    now = timezone.now()
    Status = SmsMessage.Status
    stale_claim = now - timedelta(seconds=settings.SMS_PROCESSING_LEASE_SECONDS)
    # The session condition is a subquery on session_id, not a join: with a join Django writes
    # `WHERE id IN (SELECT ... status = 'queued')`, and a second worker blocked on this row's lock would
    # re-check only `id IN (...)` against its old snapshot and claim a row already sent (double SMS).
    # Here the status, lease and attempts are conditions on the updated row itself, which PostgreSQL
    # re-evaluates against the committed version after the lock is released.
    live_sessions = OtpSession.objects.filter(status=OtpSession.Status.PENDING, expires_at__gt=now).values("pk")
    claimed = (
        SmsMessage.objects.filter(pk=message_id, attempts__lt=settings.SMS_MAX_SEND_ATTEMPTS)
        .filter(Q(status=Status.QUEUED) | Q(status=Status.PROCESSING, claimed_at__lt=stale_claim))
        .filter(session_id__in=live_sessions)
        .update(status=Status.PROCESSING, claimed_at=now, attempts=F("attempts") + 1, updated_at=now)
    )
    message = SmsMessage.objects.select_related("session", "workspace").filter(pk=message_id).first()
    if message is None:
        return "missing"
    if not claimed:
        return _settle_unclaimable(message, now=now, stale_claim=stale_claim)

    mine = SmsMessage.objects.filter(pk=message.pk, status=Status.PROCESSING, claimed_at=now)
    try:
        text = decrypt_text(message.encrypted_text)
    except InvalidToken:
        # The encryption key changed since the request: no retry can ever read this text. Without this
        # the row would sit `processing` and be re-claimed once per lease until its attempts ran out.
        _finish(mine, message, Status.FAILED, error="the SMS text cannot be decrypted with the current key")
        logger.error("SMS %s cannot be decrypted (SMS_ENCRYPTION_KEY changed?); not sent", message.public_id)
        return Status.FAILED
    outgoing = OutgoingSms(to=message.to, sender=message.sender, text=text, reference=str(message.public_id))
    try:
        result = get_gateway().send(outgoing)
    except PermanentGatewayError as exc:
        _finish(mine, message, Status.FAILED, error=str(exc))
        logger.warning("SMS %s failed permanently: %s", message.public_id, exc)
        return Status.FAILED
    except TransientGatewayError as exc:
        if message.attempts >= settings.SMS_MAX_SEND_ATTEMPTS:
            _finish(mine, message, Status.FAILED, error=f"gave up after {message.attempts} attempts: {exc}")
            logger.warning("SMS %s failed after %s attempts: %s", message.public_id, message.attempts, exc)
            return Status.FAILED
        delay = _retry_delay(message.attempts)
        mine.update(
            status=Status.QUEUED, claimed_at=None, last_error=str(exc)[:500],
            next_attempt_at=timezone.now() + timedelta(seconds=delay), updated_at=timezone.now(),
        )
        logger.info("SMS %s attempt %s failed (%s); retrying", message.public_id, message.attempts, exc)
        raise SmsRetryLater(delay) from None
    mine.update(
        status=Status.SENT, provider_message_id=result.provider_message_id[:200], encrypted_text=None,
        last_error="", finished_at=timezone.now(), updated_at=timezone.now(),
    )
    logger.info("SMS %s sent to the gateway (attempt %s)", message.public_id, message.attempts)
    return Status.SENT


def _settle_unclaimable(message: SmsMessage, *, now: datetime, stale_claim: datetime) -> str:
    """Why a row could not be claimed; ends rows that can never be sent (dead OTP, no attempts left)."""
    Status = SmsMessage.Status
    claimable_state = message.status == Status.QUEUED or (
        message.status == Status.PROCESSING and message.claimed_at is not None and message.claimed_at < stale_claim
    )
    if not claimable_state:
        return message.status  # done already, or another worker holds a live claim
    row = SmsMessage.objects.filter(pk=message.pk, status=message.status, claimed_at=message.claimed_at)
    session = message.session
    if session.status != OtpSession.Status.PENDING or session.expires_at <= now:
        _finish(row, message, Status.EXPIRED, error="the OTP was no longer valid; nothing was sent")
        return Status.EXPIRED
    if message.attempts >= settings.SMS_MAX_SEND_ATTEMPTS:
        _finish(row, message, Status.FAILED, error=f"gave up after {message.attempts} attempts")
        return Status.FAILED
    # Claimable after all: another worker's claim ended (a retry put it back in the queue) between our
    # UPDATE and this read. Its own retry sends it; failing it here would drop a good message.
    return message.status


def _finish(row, message: SmsMessage, status: str, *, error: str) -> None:
    """Ends delivery: wipes the encrypted text and refunds a prepaid workspace for an SMS never sent."""
    now = timezone.now()
    with transaction.atomic():
        if not row.update(status=status, encrypted_text=None, last_error=error[:500], finished_at=now,
                          updated_at=now):
            return  # someone else settled it first
        workspace = message.workspace
        if workspace.is_prepaid and status in (SmsMessage.Status.FAILED, SmsMessage.Status.EXPIRED):
            balance_credit(workspace=workspace, units=message.units, reason=LedgerEntry.Reason.REFUND,
                           actor="delivery", reference=str(message.public_id))


def sms_requeue_stale(*, limit: int = 500) -> int:
    """Enqueues outbox rows that were never picked up (broker down at request time, lost publish) or
    whose worker died mid-send; returns how many were enqueued."""
    now = timezone.now()
    Status = SmsMessage.Status
    stale = now - timedelta(seconds=settings.SMS_STALE_AFTER_SECONDS)
    lease_over = now - timedelta(seconds=settings.SMS_PROCESSING_LEASE_SECONDS)
    rows = list(
        SmsMessage.objects.filter(
            Q(status=Status.QUEUED, next_attempt_at__lt=stale) | Q(status=Status.PROCESSING, claimed_at__lt=lease_over)
        )
        .order_by("next_attempt_at")
        .values_list("pk", "session__expires_at")[:limit]
    )
    if rows:
        # Not due again until another stale period passes, so one outage does not flood the queue.
        SmsMessage.objects.filter(pk__in=[pk for pk, _ in rows], status=Status.QUEUED).update(next_attempt_at=now)
    for pk, expires_at in rows:
        sms_enqueue(message_id=pk, expires_at=max(expires_at, now + timedelta(seconds=30)))
    return len(rows)


def otp_sessions_purge(*, older_than_days: int | None = None) -> int:
    days = older_than_days if older_than_days is not None else settings.OTP_SESSION_RETENTION_DAYS
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = OtpSession.objects.filter(created_at__lt=cutoff).delete()
    return deleted

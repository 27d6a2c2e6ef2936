"""Writes for OTP sessions: request a code (or reuse the live one) and verify it.

Delivering the SMS is `otp.delivery`'s: a request only writes the outbox row and enqueues it on commit.
"""

import hashlib
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, models, transaction
from django.db.models import QuerySet
from django.utils import timezone

from otp.crypto import code_digest, code_matches, encrypt_text, generate_code
from otp.delivery import sms_enqueue_on_commit
from otp.destinations import DestinationRefused, destination_check
from otp.errors import DestinationRateLimited, OtpSessionNotFound
from otp.models import OtpSession, SmsMessage
from otp.templating import default_template
from senders.models import SenderName
from senders.selectors import sender_name_get_approved
from workspaces.billing import balance_debit
from workspaces.models import Workspace
from zeckta import sms_text
from zeckta.errors import ValidationFailed

SessionStatus = OtpSession.Status

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
    sender_name = sender_name_get_approved(workspace=workspace, name=src)
    if sender_name is None:
        raise ValidationFailed.for_field("src", "Not an approved sender name of this workspace.")
    template = message_template or workspace.default_message_template or default_template(purpose)

    try:
        return _request_in_transaction(
            workspace=workspace, sender_name=sender_name, dest=dest, country=country, purpose=purpose,
            template=template,
        )
    except IntegrityError:
        # Only where no advisory lock serialises requests (SQLite): a concurrent identical request
        # created the pending session first. Run again: it is now reused (or replaced).
        return _request_in_transaction(
            workspace=workspace, sender_name=sender_name, dest=dest, country=country, purpose=purpose,
            template=template,
        )


@transaction.atomic
def _request_in_transaction(
    *, workspace: Workspace, sender_name: SenderName, dest: str, country: str, purpose: str, template: str
) -> OtpRequestResult:
    now = timezone.now()
    _lock_destination(workspace_id=workspace.pk, dest=dest)
    pending = (
        OtpSession.objects.select_for_update()
        .filter(workspace=workspace, dest=dest, purpose=purpose, status=SessionStatus.PENDING)
        .first()
    )
    if pending is not None:
        if workspace.otp_reuse_enabled and pending.expires_at > now:
            return OtpRequestResult(session=pending, reused=True)
        # Expired, or replaced because reuse is off: it can never be approved from now on.
        OtpSession.objects.filter(pk=pending.pk, status=SessionStatus.PENDING).update(status=SessionStatus.EXPIRED)

    _check_send_limits(workspace=workspace, dest=dest, country=country, now=now)

    session_id = uuid.uuid4()
    code = generate_code(workspace.otp_code_length)
    text = sms_text.render(template, code=code, validity_seconds=workspace.otp_validity_seconds)
    segments = sms_text.count_segments(text)
    session = OtpSession.objects.create(
        public_id=session_id,
        workspace=workspace,
        sender_name=sender_name,
        dest=dest,
        country=country,
        src=sender_name.name,
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
        src=sender_name.name,
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
    sms_enqueue_on_commit(message_id=message.pk, expires_at=session.expires_at)
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


def _window_full_for(sessions: QuerySet[OtpSession], *, limit: int, window: timedelta, now: datetime) -> int | None:
    """Seconds until `sessions` created within `window` drop below `limit`; None while below it.

    Reads only the newest `limit` creation times (one indexed query): the window reopens when the
    oldest of them leaves it.
    """
    newest_first = sessions.filter(created_at__gt=now - window).order_by("-created_at")
    recent = list(newest_first.values_list("created_at", flat=True)[:limit])
    if len(recent) < limit:
        return None
    return math.ceil((recent[-1] + window - now).total_seconds())


# --- Verify ------------------------------------------------------------------------------------


class VerifyOutcome(models.TextChoices):
    """What a verify found. Every outcome is an answer the service returns, never an exception: a wrong
    code must leave its used attempt committed whatever the caller does next."""

    APPROVED = "APPROVED"
    INVALID = "INVALID"
    EXPIRED = "EXPIRED"
    MAX_ATTEMPTS_REACHED = "MAX_ATTEMPTS_REACHED"
    ALREADY_USED = "ALREADY_USED"


@dataclass(frozen=True)
class VerifyResult:
    outcome: VerifyOutcome
    session: OtpSession

    @property
    def verified(self) -> bool:
        return self.outcome == VerifyOutcome.APPROVED


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
    if session.status == SessionStatus.APPROVED:
        return VerifyResult(VerifyOutcome.ALREADY_USED, session)
    if session.status == SessionStatus.MAX_ATTEMPTS_REACHED:
        return VerifyResult(VerifyOutcome.MAX_ATTEMPTS_REACHED, session)
    if session.status == SessionStatus.EXPIRED:
        return VerifyResult(VerifyOutcome.EXPIRED, session)
    if session.expires_at <= now:
        session.status = SessionStatus.EXPIRED
        session.save(update_fields=["status"])
        return VerifyResult(VerifyOutcome.EXPIRED, session)

    if code_matches(session.public_id, code, session.code_digest):
        session.status, session.verified_at = SessionStatus.APPROVED, now
        session.save(update_fields=["status", "verified_at"])
        return VerifyResult(VerifyOutcome.APPROVED, session)

    session.attempts_used += 1
    if session.attempts_used >= session.max_attempts:
        session.status = SessionStatus.MAX_ATTEMPTS_REACHED
    session.save(update_fields=["attempts_used", "status"])
    locked = session.status == SessionStatus.MAX_ATTEMPTS_REACHED
    return VerifyResult(VerifyOutcome.MAX_ATTEMPTS_REACHED if locked else VerifyOutcome.INVALID, session)



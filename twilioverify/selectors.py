"""Reads the door needs that the OTP API does not: a session found by its number, and the sends of a session.
Always scoped by workspace and mode. The sender a Twilio request (which names none) goes out from is
`senders.selectors.sender_name_default`, as for the Supabase hook."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from otp.models import OtpSession, SmsMessage
from otp.transactions import Transaction
from workspaces.models import Workspace


def pending_session_id_get(
    *,
    workspace: Workspace,
    dest: str,
    now: datetime,
    test: bool,
    purpose: str | None = None,
    transaction: Transaction | None = None,
) -> uuid.UUID | None:
    """The newest pending, unexpired session to `dest`: what Twilio calls the pending Verification of a `To`.
    With `purpose`, only one of that purpose bound to exactly `transaction` (or to none). Served by
    otp_session_dest_window_idx (workspace, dest, created_at)."""
    sessions = OtpSession.objects.filter(
        workspace=workspace, dest=dest, is_test=test, status=OtpSession.Status.PENDING, expires_at__gt=now
    )
    if purpose is not None:
        sessions = sessions.filter(purpose=purpose)
        sessions = (
            sessions.filter(transaction=transaction.as_dict())
            if transaction
            else sessions.filter(transaction__isnull=True)
        )
    return sessions.order_by("-created_at").values_list("public_id", flat=True).first()


@dataclass(frozen=True)
class SendAttempt:
    sms_id: uuid.UUID
    created_at: datetime


def send_attempts_list(*, session: OtpSession) -> list[SendAttempt]:
    """Every SMS the session sent (its first and each resend), oldest first."""
    rows = (
        SmsMessage.objects.filter(session=session).order_by("created_at", "id").values_list("public_id", "created_at")
    )
    return [SendAttempt(sms_id, created_at) for sms_id, created_at in rows]

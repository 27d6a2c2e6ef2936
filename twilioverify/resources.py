"""Twilio's Verification and VerificationCheck resources, drawn from an OTP session: the fields the SDK's
VerificationInstance and VerificationCheckInstance read, with Twilio's names and value shapes. Never a code."""

from datetime import UTC, datetime

from otp.models import OtpSession
from otp.transactions import Transaction
from twilioverify.selectors import SendAttempt
from twilioverify.serializers import CHANNEL_SMS, sid_of
from workspaces.models import Workspace

# Twilio's session states. A PENDING session past its expiry is expired to every reader (API.md section 4).
STATUSES = {
    OtpSession.Status.PENDING: "pending",
    OtpSession.Status.APPROVED: "approved",
    OtpSession.Status.EXPIRED: "expired",
    OtpSession.Status.MAX_ATTEMPTS_REACHED: "max_attempts_reached",
    OtpSession.Status.CANCELED: "canceled",
}


def _utc(moment: datetime) -> str:
    """Verify v2's timestamps: ISO 8601 UTC to the second, what the SDK's deserialize.iso8601_datetime parses
    (Twilio's reference says RFC 2822, but its Verify answers, and the SDK, use this)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_of(session: OtpSession, *, now: datetime) -> str:
    if session.status == OtpSession.Status.PENDING and session.expires_at <= now:
        return "expired"
    return STATUSES[OtpSession.Status(session.status)]


def _common(session: OtpSession, *, workspace: Workspace, now: datetime, attempts: list[SendAttempt]) -> dict:
    transaction = Transaction.from_stored(session.transaction)
    status = status_of(session, now=now)
    changes = [session.created_at, *(attempt.created_at for attempt in attempts)]
    if session.verified_at:
        changes.append(session.verified_at)
    return {
        "sid": sid_of(session.public_id),
        "service_sid": workspace.service_sid,
        "account_sid": workspace.account_sid,
        "to": session.dest,
        "channel": CHANNEL_SMS,
        "status": status,
        "valid": status == "approved",
        "amount": transaction.display_amount if transaction else None,
        "payee": transaction.payee if transaction else None,
        "date_created": _utc(session.created_at),
        "date_updated": _utc(max(changes)),
    }


def verification(
    session: OtpSession, *, workspace: Workspace, now: datetime, attempts: list[SendAttempt], base_url: str
) -> dict:
    sid = sid_of(session.public_id)
    return {
        **_common(session, workspace=workspace, now=now, attempts=attempts),
        # Twilio fills `lookup` from its carrier lookup, which this service does not do.
        "lookup": {"carrier": None},
        "send_code_attempts": [
            {
                "attempt_sid": f"VL{attempt.sms_id.hex}",
                "channel": CHANNEL_SMS,
                "time": attempt.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            }
            for attempt in attempts
        ],
        "sna": None,
        "url": f"{base_url}/v2/Services/{workspace.service_sid}/Verifications/{sid}",
    }


def verification_check(
    session: OtpSession, *, workspace: Workspace, now: datetime, attempts: list[SendAttempt]
) -> dict:
    return {**_common(session, workspace=workspace, now=now, attempts=attempts), "sna_attempts_error_codes": []}

"""The webhook events of OTP sessions (API.md section 9), recorded in the transaction of the change they report.

Each call first asks the per-process subscription cache whether any endpoint of the workspace, of the
session's mode (test or live), receives the event: when none does, it returns without a single SQL
statement (once the cache is warm), so the hot paths cost the same as without webhooks. Only then is the
session view of API.md section 4 read and written to the webhooks outbox, as it stands inside the
caller's transaction, after the change.
"""

import uuid
from datetime import datetime

from otp.errors import OtpSessionNotFound
from otp.models import OtpSession, SmsMessage
from otp.selectors import otp_session_get
from otp.serializers import OtpSessionDataSerializer
from webhooks.models import Event
from webhooks.selectors import webhook_subscribed
from webhooks.services import webhook_event_record
from workspaces.models import Workspace

__all__ = ["Event", "otp_event_emit", "otp_sms_event_emit", "otp_sms_event_type"]

# What each status an SMS can reach means to the workspace's receivers. A `sent` receipt tells nothing
# new (otp.sent went out when the provider accepted the SMS); `expired` from a receipt (the network gave
# up) or from the worker (the OTP died before it could be sent) is a failure for good like the others.
_SMS_EVENTS = {
    SmsMessage.Status.DELIVERED: Event.OTP_DELIVERED,
    SmsMessage.Status.FAILED: Event.OTP_DELIVERY_FAILED,
    SmsMessage.Status.UNDELIVERABLE: Event.OTP_DELIVERY_FAILED,
    SmsMessage.Status.REJECTED: Event.OTP_DELIVERY_FAILED,
    SmsMessage.Status.EXPIRED: Event.OTP_DELIVERY_FAILED,
}


# The events of a session's own state: each happens once to a session, so they are recorded under a key
# (the event and the session) and a second report of the same change records nothing. A verify on
# PostgreSQL answers MAX_ATTEMPTS_REACHED or EXPIRED alike for the change and for every later call.
ONCE_PER_SESSION = frozenset(
    {Event.OTP_APPROVED, Event.OTP_MAX_ATTEMPTS_REACHED, Event.OTP_EXPIRED, Event.OTP_CANCELED}
)


def otp_event_emit(
    *, workspace_id: int, session_public_id: uuid.UUID, event_type: str, at: datetime, test: bool | None = None
) -> None:
    """Records `event_type` (an `Event` value) for the session, as of `at` (the moment of the change).

    Call it inside the transaction of the change, after it: the event commits or rolls back with it and
    carries the session as that change left it. A test session's event goes to the workspace's test
    endpoints only, a live one's to its live endpoints only (API.md section 10). Free (no SQL, once the
    cache is warm) when no endpoint of the session's mode receives `event_type`; else one read of the
    session and one insert.

    `test`: the session's mode, when the caller knows it. None: the session is looked for among the modes
    that have a receiver of the event, live first, so a live session costs what it did before modes
    existed (one read) and a test session one more only when both modes have a receiver.
    """
    modes = (False, True) if test is None else (test,)
    for mode in modes:
        if not webhook_subscribed(workspace_id=workspace_id, event_type=event_type, test=mode):
            continue
        # The selector reads only the workspace's pk: an unsaved instance spares a query for the row.
        try:
            session = otp_session_get(workspace=Workspace(pk=workspace_id), session_id=session_public_id, test=mode)
        except OtpSessionNotFound:
            continue  # a session of the other mode (or gone): its events are not this mode's receivers'
        _record(session, event_type=event_type, at=at)
        return


def _record(session: OtpSession, *, event_type: str, at: datetime) -> None:
    if event_type == Event.OTP_EXPIRED:
        at = min(at, session.expires_at)  # it happened when the validity ended, not when someone noticed
    data = dict(OtpSessionDataSerializer(session, context={"now": at}).data)
    key = f"{event_type}:{session.public_id}" if event_type in ONCE_PER_SESSION else None
    webhook_event_record(
        workspace_id=session.workspace_id, event_type=event_type, at=at, data=data, key=key, test=session.is_test
    )


def otp_sms_event_type(status: str) -> str | None:
    """The event an SMS's new status makes (otp.delivered, otp.delivery_failed), or None."""
    return _SMS_EVENTS.get(SmsMessage.Status(status)) if status in SmsMessage.Status.values else None


def otp_sms_event_emit(*, message: SmsMessage, event_type: str, at: datetime) -> None:
    """`otp_event_emit` for the session of an outbox row (of the row's mode): its public id is read only
    when someone listens. A relayed SMS has no session, and so no event."""
    if message.session_id is None or not webhook_subscribed(
        workspace_id=message.workspace_id, event_type=event_type, test=message.is_test
    ):
        return
    session = message.session
    assert session is not None  # it has a session_id
    otp_event_emit(
        workspace_id=message.workspace_id,
        session_public_id=session.public_id,
        event_type=event_type,
        at=at,
        test=message.is_test,
    )

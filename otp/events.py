"""The webhook events of OTP sessions (API.md section 9), recorded in the transaction of the change they report.

Each call first asks the per-process subscription cache whether any endpoint of the workspace receives
the event: when none does, it returns without a single SQL statement (once the cache is warm), so the
hot paths cost the same as without webhooks. Only then is the session view of API.md section 4 read and
written to the webhooks outbox, as it stands inside the caller's transaction, after the change.
"""

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from otp.models import OtpSession, SmsMessage
from otp.selectors import otp_session_get
from webhooks.models import Event
from webhooks.selectors import webhook_subscribed
from webhooks.services import webhook_event_record
from workspaces.models import Workspace

__all__ = ["Event", "otp_event_emit", "otp_session_view_register", "otp_sms_event_emit", "otp_sms_event_type"]

# The session view of API.md section 4 as of a moment: `OtpSessionDataSerializer(session, context={"now":
# at}).data`, handed in by OtpConfig.ready. Not imported here: otp.serializers imports otp.services, which
# imports otp.delivery, which records events, and that import cycle is what the layering test forbids.
SessionView = Callable[[OtpSession, datetime], dict[str, Any]]
_session_view: SessionView | None = None

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


def otp_event_emit(*, workspace_id: int, session_public_id: uuid.UUID, event_type: str, at: datetime) -> None:
    """Records `event_type` (an `Event` value) for the session, as of `at` (the moment of the change).

    Call it inside the transaction of the change, after it: the event commits or rolls back with it and
    carries the session as that change left it. Free (no SQL, once the cache is warm) when no endpoint of
    the workspace receives `event_type`; else one read of the session and one insert.
    """
    if not webhook_subscribed(workspace_id=workspace_id, event_type=event_type):
        return
    # The selector reads only the workspace's pk: an unsaved instance spares a query for the row.
    if _session_view is None:
        raise RuntimeError("the otp app is not ready: OtpConfig.ready registers the session view")
    session = otp_session_get(workspace=Workspace(pk=workspace_id), session_id=session_public_id)
    webhook_event_record(workspace_id=workspace_id, event_type=event_type, at=at, data=_session_view(session, at))


def otp_session_view_register(view: SessionView) -> None:
    global _session_view
    _session_view = view


def otp_sms_event_type(status: str) -> str | None:
    """The event an SMS's new status makes (otp.delivered, otp.delivery_failed), or None."""
    return _SMS_EVENTS.get(SmsMessage.Status(status)) if status in SmsMessage.Status.values else None


def otp_sms_event_emit(*, message: SmsMessage, event_type: str, at: datetime) -> None:
    """`otp_event_emit` for the session of an outbox row: its public id is read only when someone listens."""
    if not webhook_subscribed(workspace_id=message.workspace_id, event_type=event_type):
        return
    otp_event_emit(workspace_id=message.workspace_id, session_public_id=message.session.public_id,
                   event_type=event_type, at=at)

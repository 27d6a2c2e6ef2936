"""Channel fallback (API.md section 15): while a session is PENDING, when its latest send fails for good, or
nothing says it was delivered within the workspace's fallbackAfterSeconds, the next channel of the
workspace's order not yet tried for the session gets a fresh code, without any client call.

The timer is a column, not a countdown in a worker's memory: each send sets its session's `fallback_at`
(otp.services), and the beat's scan (`fallbacks_run_due`, every OTP_FALLBACK_SCAN_SECONDS) falls back the
sessions it finds due, through the partial index otp_session_fallback_due_idx. A worker or a beat that
dies loses nothing: the column is still there for the next scan. A send that fails for good brings the
column forward to now (otp.fallback_trigger.fallback_now, in the transaction that records the failure) and enqueues the
fallback at once; the scan is the safety net when that publish is lost.

A fallback is a resend the service makes itself (otp.services.otp_resend with `fallback_from`): a new code
and a new send row, counted by every send limit and the fraud guard. It checks under the session's row
lock that the send it falls back from is still the latest and the fallback still due, so two workers or
two beats never fall back twice from one send.
"""

import logging

from django.utils import timezone

from otp.channels import next_channel
from otp.models import OtpSession, SmsMessage
from otp.services import FallbackNotDue, otp_resend
from zeckta.errors import ApplicationError

logger = logging.getLogger(__name__)

FALLBACKS_PER_SCAN = 500  # sessions one scan falls back; the next scan, seconds later, takes the rest

SessionStatus = OtpSession.Status


def fallbacks_run_due(*, limit: int = FALLBACKS_PER_SCAN) -> int:
    """The beat's scan: falls back every pending session whose fallback is due; returns how many sent."""
    now = timezone.now()
    due = list(
        OtpSession.objects.filter(status=SessionStatus.PENDING, fallback_at__lte=now)
        .order_by("fallback_at")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(otp_fall_back(session_id=session_id) for session_id in due)


def otp_fall_back(*, session_id: int) -> bool:
    """Falls the session back to the next channel if that is due; whether a send was made.

    Nothing happens to a session no longer PENDING. The fallback is dropped (its column cleared) when the
    latest send was delivered, the session expired, no channel of the order is left to try, or a send
    limit or the fraud guard refuses the new send (logged: the client still has the earlier code's
    session to resend or to let expire)."""
    now = timezone.now()
    session = (
        OtpSession.objects.select_related("workspace")
        .filter(pk=session_id, status=SessionStatus.PENDING, fallback_at__lte=now)
        .first()
    )
    if session is None:
        return False
    sends = list(session.sms_messages.order_by("-id").values_list("pk", "status", "channel"))
    if not sends or session.is_test:
        return _dropped(session)
    step, status, _ = sends[0]
    if session.expires_at <= now or status == SmsMessage.Status.DELIVERED:
        return _dropped(session)
    channel = next_channel(
        workspace=session.workspace, country=session.country, tried={channel for _, _, channel in sends}
    )
    if channel is None:
        return _dropped(session)
    try:
        otp_resend(workspace=session.workspace, session_id=session.public_id, channel=channel, fallback_from=step)
    except FallbackNotDue:
        return False  # another worker fell back first, or the session moved on meanwhile
    except ApplicationError as exc:
        logger.warning("session %s: the fallback to %s was refused (%s)", session.public_id, channel, exc.code)
        return _dropped(session)
    logger.info("session %s falls back from send %s to %s", session.public_id, step, channel)
    return True


def _dropped(session: OtpSession) -> bool:
    """Clears the fallback, unless a send changed it meanwhile (then its new due time stands)."""
    OtpSession.objects.filter(pk=session.pk, fallback_at=session.fallback_at).update(fallback_at=None)
    return False

"""The end of a session's life: pending sessions past their validity become EXPIRED (and are reported),
and sessions past their retention are deleted with what hangs off them.
"""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from otp.events import Event, otp_event_emit
from otp.models import DailySmsCount, EarlyReceipt, OtpSession, SmsMessage, WrongCode

SessionStatus = OtpSession.Status


def otp_sessions_expire(*, limit: int = 1000) -> int:
    """Writes EXPIRED on PENDING sessions past their validity (beat, every 30 s) and reports each as
    `otp.expired`; returns how many. Readers already take such a session as expired: this is what tells
    the workspace's webhooks, close to the moment it happened. Rows another transaction holds (a verify
    of that very session) are skipped: the next run, or that verify, takes them.
    """
    now = timezone.now()
    with transaction.atomic():
        due = list(
            OtpSession.objects.select_for_update(skip_locked=True)
            .filter(status=SessionStatus.PENDING, expires_at__lte=now)
            .order_by("expires_at")
            .values_list("pk", "workspace_id", "public_id")[:limit]
        )
        OtpSession.objects.filter(pk__in=[pk for pk, _, _ in due]).update(status=SessionStatus.EXPIRED)
        for _, workspace_id, public_id in due:
            otp_event_emit(workspace_id=workspace_id, session_public_id=public_id, event_type=Event.OTP_EXPIRED, at=now)
    return len(due)


def otp_sessions_purge(*, older_than_days: int | None = None) -> int:
    """Deletes sessions (and, by cascade, their SMS rows) and relayed SMS past their retention, wrong codes
    past the guess budget's window and daily counters of past days; returns how many sessions went."""
    now = timezone.now()
    days = older_than_days if older_than_days is not None else settings.OTP_SESSION_RETENTION_DAYS
    deleted, _ = OtpSession.objects.filter(created_at__lt=now - timedelta(days=days)).delete()
    # Relayed SMS have no session to go with: the same retention (otp_sms_relayed_created_idx).
    SmsMessage.objects.filter(session__isnull=True, created_at__lt=now - timedelta(days=days)).delete()
    WrongCode.objects.filter(created_at__lt=now - timedelta(seconds=settings.OTP_WRONG_CODE_WINDOW_SECONDS)).delete()
    DailySmsCount.objects.filter(day__lt=now.date() - timedelta(days=1)).delete()
    EarlyReceipt.objects.filter(received_at__lt=now - timedelta(days=1)).delete()
    return deleted
